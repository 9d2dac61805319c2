"""``python -m servers.search --transport stdio|http``: run the search server alone."""

from servers.search.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "search")
