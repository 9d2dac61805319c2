"""A connector's HTTP requests: SSRF-guarded, pinned, bounded, and patient with rate limits.

Every request is checked by the same ``AddressGuard`` the content layer fetches with
(``VSM_FETCH_ALLOW`` lets a private or loopback API through), then sent to the *checked
address* (Host header and TLS SNI keep the name), so DNS cannot swap the address in between.
Redirects are not followed: an API that redirects is reported, not chased past the guard.

Rate limits: 429 and 503 (and other 5xx) are retried up to ``VSM_CONNECTOR_MAX_RETRIES``
times, waiting what ``Retry-After`` says (seconds or an HTTP date; at most
``VSM_CONNECTOR_MAX_WAIT_S``), else an exponential backoff from ``VSM_CONNECTOR_BACKOFF_S``.
401 and 403 are ``ConnectorAuthError`` at once: retrying a refused credential only burns quota.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from vsm_mcp.errors import InvalidArguments, Unauthorized, UpstreamUnavailable
from vsm_mcp.ssrf import AddressGuard, AllowList

USER_AGENT = "vsm-mcp-connector/0.1"
RETRY = {429, 500, 502, 503, 504}


class ConnectorAuthError(Unauthorized):
    """The source refused the credentials (HTTP 401/403)."""


class ConnectorError(UpstreamUnavailable):
    """The source answered with an error that retrying did not cure."""


@dataclass
class Response:
    status: int
    headers: httpx.Headers
    body: bytes
    url: str

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ConnectorError(f"{self.url} did not answer JSON") from None


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 8
    backoff_s: float = 0.5
    max_wait_s: float = 60.0


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class GuardedHttp:
    def __init__(self, allow: list[str], *, timeout_s: float = 30.0, max_bytes: int = 20 * 1024 * 1024,
                 retry: RetryPolicy | None = None) -> None:
        self.guard = AddressGuard(AllowList.parse(allow))
        self.max_bytes = max_bytes
        self.retry = retry or RetryPolicy()
        self.retries = 0  # requests retried (429/5xx), for status and benchmarks
        self._client = httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout_s),
            headers={"user-agent": USER_AGENT}, limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    async def request(self, connector: str, method: str, url: str, *, params: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None, auth: tuple[str, str] | None = None) -> Response:
        """Send one request (retried on 429/5xx); ``connector`` names the connector in errors."""
        if params:
            url = url + ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        attempt = 0
        while True:
            resp = await self._once(method, url, headers or {}, auth)
            limited = resp.status == 403 and b"ateLimitExceeded" in resp.body  # Drive's 403 (user)rateLimitExceeded
            if (resp.status in RETRY or limited) and attempt < self.retry.max_retries:
                asked = retry_after(resp.headers.get("retry-after") or resp.headers.get("x-contentful-ratelimit-reset"))
                wait = asked if asked is not None else self.retry.backoff_s * (2 ** attempt)
                attempt += 1
                self.retries += 1
                await asyncio.sleep(min(wait, self.retry.max_wait_s))
                continue
            if resp.status in (401, 403):
                raise ConnectorAuthError(
                    f"connector {connector!r}: {urlsplit(url).netloc} refused the credentials (HTTP {resp.status}); "
                    "renew them and sync again (the cursor is unchanged)"
                )
            if resp.status >= 300:
                raise ConnectorError(
                    f"connector {connector!r}: {method} {url.split('?', 1)[0]} answered HTTP {resp.status}"
                    + (f" after {attempt} retries" if attempt else "")
                )
            return resp

    async def _once(self, method: str, url: str, headers: dict[str, str], auth: tuple[str, str] | None) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArguments(f"invalid connector URL {url!r}: expected http(s)://host/…")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # the URL without its query in any refusal: a product like Ghost carries its key there
        target = await self.guard.check(url.split("?", 1)[0], parts.hostname, port)
        request = self._client.build_request(
            method, target.pinned_url(url), headers={"host": parts.netloc.rsplit("@", 1)[-1], **headers},
            extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else {},
        )
        if auth is not None:
            request = httpx.BasicAuth(*auth).auth_flow(request).__next__()
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ConnectorError(f"{method} {url.split('?', 1)[0]} failed: {exc}") from None
        try:
            chunks, total = [], 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > self.max_bytes:
                    raise ConnectorError(f"{url.split('?', 1)[0]} answered more than {self.max_bytes} bytes")
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise ConnectorError(f"reading {url.split('?', 1)[0]} failed: {exc}") from None
        finally:
            await response.aclose()
        return Response(response.status_code, response.headers, b"".join(chunks), url)

    async def aclose(self) -> None:
        await self._client.aclose()
