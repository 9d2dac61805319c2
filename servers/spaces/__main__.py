"""``python -m servers.spaces --transport stdio|http``: run the spaces server alone."""

from servers.spaces.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "spaces")
