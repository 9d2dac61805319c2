"""One error taxonomy for the whole platform.

Each class carries its JSON-RPC error code, HTTP status and metric label, so a failure is
mapped once, wherever it surfaces (MCP, REST, SSE, CLI)::

    VsmError                       -32603  500  internal
    ├── ConfigError                -32603  500  config
    ├── NotFound                   -32601  404  not_found        (unknown tool, bucket, key …)
    ├── InvalidArguments           -32602  400  invalid_arguments
    ├── Unauthorized               -32001  401  unauthorized
    ├── Forbidden                  -32003  403  forbidden
    │   └── PolicyDenied           -32004  403  policy_denied
    ├── RateLimited                -32029  429  rate_limited     (retry_after seconds)
    ├── Conflict                   -32009  409  conflict
    ├── QuotaExceeded              -32013  413  quota_exceeded
    ├── UpstreamUnavailable        -32010  503  upstream_unavailable
    ├── UpstreamTimeout            -32011  504  upstream_timeout
    ├── DatabaseUnavailable        -32012  503  database_unavailable
    └── Internal                   -32603  500  internal

A protocol or routing failure is one of these (a JSON-RPC error). A tool that ran and failed
is an MCP result with ``is_error=True`` — never one of these.
"""

from __future__ import annotations

from typing import Any, ClassVar


class VsmError(Exception):
    """Base class. ``data`` is extra, JSON-serialisable detail for the client."""

    code: ClassVar[int] = -32603
    status: ClassVar[int] = 500
    label: ClassVar[str] = "internal"

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = dict(data or {})

    def to_jsonrpc(self) -> dict[str, Any]:
        """The ``error`` member of a JSON-RPC response."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        data = {"type": self.label, **self.data}
        body["data"] = data
        return body

    def to_http(self) -> dict[str, Any]:
        """The JSON body of an HTTP error response (one shape for every endpoint)."""
        return {"error": {"type": self.label, "message": self.message, **self.data}}


class ConfigError(VsmError):
    label = "config"


class NotFound(VsmError):
    code, status, label = -32601, 404, "not_found"


class InvalidArguments(VsmError):
    code, status, label = -32602, 400, "invalid_arguments"


class Unauthorized(VsmError):
    code, status, label = -32001, 401, "unauthorized"


class Forbidden(VsmError):
    code, status, label = -32003, 403, "forbidden"


class PolicyDenied(Forbidden):
    code, status, label = -32004, 403, "policy_denied"


class RateLimited(VsmError):
    code, status, label = -32029, 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: float, data: dict[str, Any] | None = None) -> None:
        super().__init__(message, data={"retry_after": round(retry_after, 3), **(data or {})})
        self.retry_after = retry_after


class Conflict(VsmError):
    code, status, label = -32009, 409, "conflict"


class QuotaExceeded(VsmError):
    code, status, label = -32013, 413, "quota_exceeded"


class UpstreamUnavailable(VsmError):
    code, status, label = -32010, 503, "upstream_unavailable"


class UpstreamTimeout(VsmError):
    code, status, label = -32011, 504, "upstream_timeout"


class DatabaseUnavailable(VsmError):
    code, status, label = -32012, 503, "database_unavailable"


class Internal(VsmError):
    pass


ALL_ERRORS: tuple[type[VsmError], ...] = (
    ConfigError, NotFound, InvalidArguments, Unauthorized, Forbidden, PolicyDenied, RateLimited,
    Conflict, QuotaExceeded, UpstreamUnavailable, UpstreamTimeout, DatabaseUnavailable, Internal,
)
