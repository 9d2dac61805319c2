"""``python -m servers.cep --transport stdio|http``: run the CEP server alone."""

from servers.cep.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "cep")
