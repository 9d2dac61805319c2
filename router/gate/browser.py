"""Browser safety for every route: Host allow-list, Origin allow-list, CSRF, CORS.

A web page the user visits can make the browser send requests to the gateway: through DNS
rebinding (a hostile ``Host``), cross-origin (a hostile ``Origin``), or as a "simple" request a
browser sends without a CORS preflight (a POST with a ``text/plain``, form or multipart body,
or none). The rules, applied by the gate before authentication:

* ``Host`` must be a loopback name or in ``VSM_ALLOWED_HOSTS``; on a bind wider than loopback an
  empty list accepts any host (the gateway is then reached by name; keys are required anyway).
* an ``Origin``, when sent, must be the gateway's own (same scheme-less host and port as
  ``Host``) or in ``VSM_CORS_ORIGINS`` (empty by default); ``null`` and anything else are refused.
* a state-changing request without ``Authorization`` whose body a browser could send cross-site
  without a preflight is refused unless its Origin is allowed — so a forged form post leaves no
  side effect even where no ``Origin`` is sent. A request with a key may carry any content type.
* CORS: preflights (``OPTIONS`` + ``Access-Control-Request-Method``) are answered only for
  ``VSM_CORS_ORIGINS``; answers to those origins carry ``Access-Control-Allow-Origin``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from vsm_mcp.errors import Forbidden

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Content types a browser sends cross-site without a preflight (Fetch: CORS-safelisted).
SIMPLE_TYPES = frozenset({b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"})
ALLOW_HEADERS = (
    "authorization, content-type, mcp-session-id, mcp-protocol-version, mcp-method, last-event-id, "
    "range, cache-control, traceparent"
)
EXPOSE_HEADERS = "mcp-session-id, retry-after, etag, content-range, x-vsm-cache, x-vsm-model"


def host_only(host: str) -> str:
    """``Host`` without its port, lower case (``[::1]`` keeps its brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case without a default port; "" when not an origin."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return ""
    netloc = parts.netloc
    default = ":443" if parts.scheme == "https" else ":80"
    if netloc.endswith(default):
        netloc = netloc[: -len(default)]
    return f"{parts.scheme}://{netloc}"


def is_simple_body(content_type: bytes | None) -> bool:
    """True when a browser could send this body cross-site without asking first."""
    if content_type is None:
        return True
    return content_type.split(b";", 1)[0].strip().lower() in SIMPLE_TYPES


class BrowserRules:
    """The rules above for one app; ``check`` is on every request's path, so verdicts on
    (Host, Origin) pairs are remembered (clients repeat the same two headers on every call)."""

    def __init__(self, *, loopback_bind: bool, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> None:
        hosts = {h.strip().lower() for h in allowed_hosts if h.strip()}
        self.any_host = "*" in hosts or (not loopback_bind and not hosts)
        self.hosts = frozenset({host_only(h) for h in hosts if h != "*"} | LOOPBACK_HOSTS)
        self.cors = frozenset(o for o in (normalize_origin(x) for x in cors_origins) if o)
        self._verdicts: dict[tuple[bytes | None, bytes | None], tuple[str, bool]] = {}

    def host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        return self.any_host or host_only(host) in self.hosts

    def _judge(self, raw_host: bytes | None, raw_origin: bytes | None) -> tuple[str, bool]:
        """("" or the refusal message, whether the origin is allowed to make unsafe requests)."""
        host = None if raw_host is None else raw_host.decode("latin-1")
        if not self.host_allowed(host):
            return f"Host {host!r} is not allowed (DNS rebinding protection; see VSM_ALLOWED_HOSTS)", False
        if raw_origin is None:
            return "", False
        origin = raw_origin.decode("latin-1")
        norm = normalize_origin(origin)
        if norm and (norm in self.cors or norm.split("://", 1)[1] == (host or "").strip().lower()):
            return "", True
        return f"Origin {origin!r} is not allowed (see VSM_CORS_ORIGINS)", False

    def check(
        self, method: str, raw_host: bytes | None, raw_origin: bytes | None, content_type: bytes | None,
        has_auth: bool,
    ) -> Forbidden | None:
        """None to let the request through, else the error to answer."""
        key = (raw_host, raw_origin)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._judge(raw_host, raw_origin)
            if len(self._verdicts) >= 1024:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        refusal, origin_ok = verdict
        if refusal:
            return Forbidden(refusal)
        if method not in SAFE_METHODS and not has_auth and not origin_ok and is_simple_body(content_type):
            return Forbidden(
                f"refused a {method} without an API key whose body a browser may send cross-site "
                "(text/plain, form or multipart, or none): send JSON (application/json) or an Authorization header"
            )
        return None

    def cors_origin(self, raw_origin: bytes | None) -> str | None:
        """The origin to echo in ``Access-Control-Allow-Origin``, or None."""
        if raw_origin is None or not self.cors:
            return None
        origin = raw_origin.decode("latin-1")
        return origin if normalize_origin(origin) in self.cors else None

    def preflight_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", b"GET, HEAD, POST, PUT, DELETE, OPTIONS"),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
        ]

    @staticmethod
    def response_headers(origin: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
            (b"vary", b"Origin"),
        ]
