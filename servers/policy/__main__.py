"""``python -m servers.policy --transport stdio|http``: run the policy server alone."""

from servers.policy.server import build
from vsm_mcp.standalone import main

if __name__ == "__main__":
    main(build, "policy")
