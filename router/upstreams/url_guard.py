"""Tenants' HTTP upstreams pass the SSRF guard (vsm_mcp/ssrf.py); the operator's do not.

A tenant admin who registers ``http://10.0.0.5/mcp`` or ``http://169.254.169.254/…`` would make
the gateway connect into the operator's network on the tenant's behalf — a request forgery
through the upstream registry. So a tenant's URL must resolve to public addresses only, unless
``VSM_FETCH_ALLOW`` names it (the same allow-list as the content fetcher and the relay). The
operator (manifests, ``scope: global``) owns the network and may point anywhere.

Checked when a definition is added or changed (one line, nothing written) and again each time
the registry is applied, so a name that later resolves elsewhere is not mounted. Not pinned:
the MCP client connects by name, so a DNS answer that changes during a session's life is not
caught (the content fetcher and the relay pin their connections; the MCP HTTP client has no
hook for it).
"""

from __future__ import annotations

from typing import Any

from router.upstreams.definitions import GLOBAL
from vsm_mcp.ssrf import WEB_PORTS, AddressGuard, split_url


async def check_upstream_url(guard: AddressGuard, owner: str, spec: Any) -> None:
    """Raise ``FetchRefused`` (or ``InvalidArguments``) when ``owner`` may not use ``spec``'s URL:
    a tenant's http upstream only; stdio, builtin and the operator's (``GLOBAL``) pass unchecked."""
    if spec.kind != "http" or owner == GLOBAL:
        return
    _scheme, host, port = split_url(
        spec.url, WEB_PORTS, wanted="an http upstream needs an http:// or https:// url",
        credentials="give credentials in headers or auth as ${VAR} or ${secret:NAME}", where="url",
    )
    await guard.check(spec.url, host, port)
