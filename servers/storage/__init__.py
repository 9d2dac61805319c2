"""The storage server: objects and buckets as MCP tools (see vsm_mcp/storage for the engine)."""
