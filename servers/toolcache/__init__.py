"""The ``cache`` server: control of the router's tool-result cache (router/tool_cache.py)."""
