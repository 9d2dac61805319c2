"""``python -m servers.content --transport stdio|http``: run the content server alone."""

from servers.content.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "content")
