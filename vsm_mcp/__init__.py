"""vsm-mcp: an MCP-native tool platform (kernel package).

The kernel holds what the router and every capability server share: settings, the
database layer, errors, auth, the bus and events. It imports nothing from ``router``
or ``servers`` (``vsm_mcp.cli`` is the composition root and the one exception).
"""

__version__ = "0.1.0"
