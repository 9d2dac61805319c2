"""HTTP(S) fetch for the ingest pipeline: SSRF-guarded, pinned, bounded, conditional.

Each hop (the URL and every redirect) is checked by ``AddressGuard`` and then requested from the
*checked address* (the URL's host replaced by the IP; ``Host`` header and TLS SNI/certificate
name kept as the original host name), so DNS cannot answer differently between check and
connect. Redirects are followed here, not by httpx, so each target is checked. Limits: total
time (``VSM_FETCH_TIMEOUT_S``, all hops), body size (``VSM_FETCH_MAX_BYTES``, counted after
content decoding, so a gzip bomb stops too) and hop count. ``etag`` / ``last_modified`` of the
previous fetch make the request conditional; a 304 comes back as ``not_modified``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from vsm_mcp.errors import InvalidArguments, QuotaExceeded, UpstreamTimeout, UpstreamUnavailable
from vsm_mcp.ssrf import WEB_PORTS, AddressGuard, split_url

REDIRECTS = {301, 302, 303, 307, 308}
USER_AGENT = "vsm-mcp-ingest/0.1 (+https://modelcontextprotocol.io)"
MAX_CLIENTS = 16

# httpx logs every request at INFO; a crawl of thousands of pages would drown the log (and,
# under a rich console handler, cost more CPU than the fetch itself).
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass
class Fetched:
    """One fetched resource. ``body`` is empty when ``not_modified``."""

    url: str
    final_url: str
    status: int
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    redirects: list[str] = field(default_factory=list)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 30.0
    max_redirects: int = 5


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or InvalidArguments saying what is wrong."""
    return split_url(url, WEB_PORTS, wanted="only http and https URLs can be fetched",
                     credentials="pass them another way")


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1]


class Fetcher:
    """Fetches URLs under one guard and one set of limits; keeps a few pooled clients."""

    def __init__(self, guard: AddressGuard, limits: FetchLimits | None = None, verify: bool | str = True) -> None:
        self.guard = guard
        self.limits = limits or FetchLimits()
        self.verify = verify
        # A pooled connection is keyed by the pinned IP, so TLS connections are pooled per host
        # name: a connection verified for one name must never serve another name on that IP.
        self._clients: OrderedDict[tuple[str, str], httpx.AsyncClient] = OrderedDict()
        self._closing: list[httpx.AsyncClient] = []  # evicted clients, closed with the fetcher

    def _client(self, scheme: str, host: str) -> httpx.AsyncClient:
        key = (scheme, host)
        client = self._clients.get(key)
        if client is None:
            client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, verify=self.verify,
                timeout=httpx.Timeout(self.limits.timeout_s), headers={"user-agent": USER_AGENT},
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            )
            self._clients[key] = client
            while len(self._clients) > MAX_CLIENTS:
                _, old = self._clients.popitem(last=False)
                self._closing.append(old)
        else:
            self._clients.move_to_end(key)
        return client

    async def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """GET ``url`` following checked redirects; raises FetchRefused, InvalidArguments (bad URL,
        HTTP error status), QuotaExceeded (too big), UpstreamTimeout or UpstreamUnavailable."""
        try:
            with anyio.fail_after(self.limits.timeout_s):
                return await self._fetch(url, etag, last_modified)
        except TimeoutError:
            raise UpstreamTimeout(f"fetching {url} took longer than {self.limits.timeout_s:g} s") from None

    async def _fetch(self, url: str, etag: str | None, last_modified: str | None) -> Fetched:
        current, hops = url, list[str]()
        while True:
            scheme, host, port = check_url(current)
            target = await self.guard.check(current, host, port)
            headers = {"host": _host_header(current)}
            if etag:
                headers["if-none-match"] = etag
            if last_modified:
                headers["if-modified-since"] = last_modified
            client = self._client(scheme, host)
            request = client.build_request(
                "GET", target.pinned_url(current), headers=headers,
                extensions={"sni_hostname": host} if scheme == "https" else {},
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.TimeoutException:
                raise UpstreamTimeout(f"fetching {current} timed out") from None
            except httpx.HTTPError as exc:
                raise UpstreamUnavailable(f"fetching {current} failed: {exc}") from None
            try:
                if response.status_code in REDIRECTS and "location" in response.headers:
                    if len(hops) >= self.limits.max_redirects:
                        raise InvalidArguments(f"{url} redirects more than {self.limits.max_redirects} times")
                    nxt = urljoin(current, response.headers["location"])
                    hops.append(nxt)
                    current = nxt
                    continue
                if response.status_code == 304:
                    return Fetched(url, current, 304, etag=etag, last_modified=last_modified, redirects=hops)
                if response.status_code >= 400:
                    raise InvalidArguments(f"{current} answered HTTP {response.status_code}")
                body = await self._read(current, response)
                return Fetched(
                    url, current, response.status_code, body, response.headers.get("content-type", ""),
                    response.headers.get("etag"), response.headers.get("last-modified"), hops,
                )
            finally:
                await response.aclose()

    async def _read(self, url: str, response: httpx.Response) -> bytes:
        limit = self.limits.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise QuotaExceeded(f"{url} is {int(declared)} bytes; the limit is {limit} (VSM_FETCH_MAX_BYTES)")
        parts, total = [], 0
        try:
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > limit:
                    raise QuotaExceeded(f"{url} is larger than {limit} bytes (VSM_FETCH_MAX_BYTES)")
                parts.append(chunk)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"reading {url} failed: {exc}") from None
        return b"".join(parts)

    async def aclose(self) -> None:
        for client in [*self._clients.values(), *self._closing]:
            await client.aclose()
        self._clients.clear()
        self._closing.clear()
