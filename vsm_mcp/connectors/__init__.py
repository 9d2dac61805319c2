"""Connectors: incremental, resumable sync of an outside source (a CMS, Google Drive) into the
content layer's semantic containers. Shared by ``servers/cms`` and ``servers/drive``.

* ``base`` — the interface one product implements (``Connector.page``: one page of changes from a
  cursor) and the values it returns (``Change``, ``Page``);
* ``http`` — requests through the SSRF guard (``vsm_mcp.ssrf``, ``VSM_FETCH_ALLOW``), pinned to the
  checked address, with 429/5xx retried (Retry-After honoured, else exponential backoff);
* ``credentials`` — ``${ENV}`` references, resolved at request time, never stored in clear;
* ``tables`` / ``store`` — connector rows (cursor, counts, last error) and the items they synced;
* ``sync`` — the sync as a durable workflow (DBOS), one step per page; ``tools`` — the MCP tools.
"""
