"""``python -m servers.planner --transport stdio|http``: run the planner alone (its plans call
tools through the router, so alone it can create and inspect plans but not run them)."""

from servers.planner.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "planner")
