"""``python -m servers.beliefs --transport stdio|http``: run the beliefs server alone."""

from servers.beliefs.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "beliefs")
