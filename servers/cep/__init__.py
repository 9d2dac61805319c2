"""Complex-event processing: rules over the tenant event stream (lang.py, cel.py), incremental
matchers (matchers.py, engine.py), the bus runtime with durable timers (runtime.py, store.py),
actions through the router (actions.py) and the MCP tools (server.py)."""
