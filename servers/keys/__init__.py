"""The keys server: a tenant administrator's API-key lifecycle as MCP tools."""
