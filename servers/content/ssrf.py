"""The SSRF guard moved to the kernel (``vsm_mcp.ssrf``) so every server that fetches — the
content layer and the connectors (``servers/cms``, ``servers/drive``) — shares one guard and one
``VSM_FETCH_ALLOW`` allow-list. Re-exported here for the content layer's imports."""

from vsm_mcp.ssrf import (
    AddressGuard,
    AllowList,
    FetchRefused,
    IPAddress,
    Resolver,
    Target,
    system_resolver,
    unwrap,
    why_not_public,
)

__all__ = ["AddressGuard", "AllowList", "FetchRefused", "IPAddress", "Resolver", "Target", "system_resolver", "unwrap",
           "why_not_public"]
