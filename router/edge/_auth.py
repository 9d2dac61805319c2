"""How edge routes learn who is calling: a callable ``Request -> Principal``.

The app passes the same authenticator /mcp uses; tests and the benchmark pass their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from vsm_mcp.auth import Principal
from vsm_mcp.errors import VsmError
from vsm_mcp.keys import Authenticator

Authenticate = Callable[[HTTPConnection], Awaitable[Principal]]


def bearer(authenticator: Authenticator) -> Authenticate:
    """Authenticate by the ``Authorization: Bearer vsm_…`` header (anonymous where allowed)."""

    async def authenticate(conn: HTTPConnection) -> Principal:
        return await authenticator.authenticate(conn.headers.get("authorization"))

    return authenticate


def error_response(exc: VsmError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one JSON error shape of every edge endpoint."""
    return JSONResponse(exc.to_http(), status_code=exc.status, headers=headers)
