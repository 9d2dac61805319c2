"""``python -m vsm_mcp.cli``."""

from vsm_mcp.cli import main

main()
