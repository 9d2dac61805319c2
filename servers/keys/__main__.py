"""``python -m servers.keys --transport stdio|http``: run the keys server alone."""

from servers.keys.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "keys")
