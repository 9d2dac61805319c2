"""``python -m servers.toolcache``: the cache server alone has no router cache to control;
it answers that in one line (useful only to check it starts)."""

from servers.toolcache.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "cache")
