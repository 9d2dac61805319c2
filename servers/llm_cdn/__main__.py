"""``python -m servers.llm_cdn --transport stdio|http``: run the LLM-CDN server alone."""

from servers.llm_cdn.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "llm_cdn")
