"""``python -m servers.storage --transport stdio|http``: run the storage server alone."""

from servers.storage.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "storage")
