"""The beliefs server: a replicated, tenant-isolated BeliefSet (δ-CRDT) behind MCP tools."""
