"""SSRF guard of the ingest fetcher, proven with loopback listeners only.

Each refused destination either has no listener at all (10.0.0.1, 169.254.169.254: the guard
refuses before any connect) or has a real loopback listener that must see zero requests.
"""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import pytest

from servers.content.fetch import Fetcher, FetchLimits
from tests.http_thread import serve_http
from tests.integration.content.conftest import Stack, ToolFailed
from vsm_mcp.errors import ConfigError, QuotaExceeded, UpstreamTimeout
from vsm_mcp.ssrf import AddressGuard, AllowList, FetchRefused

pytestmark = pytest.mark.anyio


class Listener:
    """A loopback HTTP server answering from a route table and counting requests."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]], host: str = "127.0.0.1") -> None:
        self.routes, self.hits, self.hosts, self.host, self.port = routes, 0, [], host, 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                listener.hits += 1
                listener.hosts.append(self.headers.get("Host", ""))
                status, headers, body = listener.routes.get(self.path, (404, {}, b""))
                if self.path == "/slow":
                    time.sleep(1.5)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    @contextmanager
    def running(self) -> Iterator[Listener]:
        with serve_http(self._handler(), self.host, name="ssrf-listener") as url:
            self.port = int(urlsplit(url).port or 0)
            yield self


def resolver(table: dict[str, list[str]]) -> Any:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host in table:
            return table[host]
        import anyio

        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(i[4][0]) for i in infos]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def victim() -> Iterator[Listener]:
    """A loopback service that must never be reached."""
    with Listener({"/": (200, {"Content-Type": "text/plain"}, b"secret")}).running() as v:
        yield v


@pytest.fixture
def victim6() -> Iterator[Listener | None]:
    if not ipv6_loopback_available():
        yield None
        return
    with Listener({"/": (200, {}, b"secret6")}, host="::1").running() as v:
        yield v


def targets(victim: Listener, victim6: Listener | None) -> list[str]:
    out = [
        f"http://127.0.0.1:{victim.port}/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        f"http://localhost:{victim.port}/",
        f"http://evil.test:{victim.port}/",  # resolves to loopback (our resolver)
        f"http://[::ffff:127.0.0.1]:{victim.port}/",
    ]
    out.append(f"http://[::1]:{victim6.port if victim6 else 9}/")
    return out


async def test_direct_targets_refused(victim: Listener, victim6: Listener | None) -> None:
    fetcher = Fetcher(AddressGuard(resolver=resolver({"evil.test": ["127.0.0.1"]})))
    try:
        for url in targets(victim, victim6):
            with pytest.raises(FetchRefused, match=r"refused to fetch .*: .* is a (loopback|private|link-local)"):
                await fetcher.fetch(url)
    finally:
        await fetcher.aclose()
    assert victim.hits == 0 and (victim6 is None or victim6.hits == 0)


async def test_redirects_to_each_target_refused(victim: Listener, victim6: Listener | None) -> None:
    bad = targets(victim, victim6)
    routes = {f"/r{i}": (302, {"Location": url}, b"") for i, url in enumerate(bad)}
    routes["/chain"] = (301, {"Location": "/r1"}, b"")
    with Listener(routes).running() as site:
        guard = AddressGuard(AllowList.parse([f"127.0.0.1:{site.port}"]), resolver({"evil.test": ["127.0.0.1"]}))
        fetcher = Fetcher(guard)
        try:
            for i, url in enumerate(bad):
                with pytest.raises(FetchRefused) as info:
                    await fetcher.fetch(f"http://127.0.0.1:{site.port}/r{i}")
                assert url.split("//", 1)[1].split("/")[0].split(":")[0].strip("[]") in info.value.message or "resolves" in info.value.message
            with pytest.raises(FetchRefused, match="10.0.0.1 is a private address"):
                await fetcher.fetch(f"http://127.0.0.1:{site.port}/chain")
        finally:
            await fetcher.aclose()
        assert site.hits == len(bad) + 2
    assert victim.hits == 0 and (victim6 is None or victim6.hits == 0)


async def test_allow_list_and_pinning(victim: Listener) -> None:
    resolve = resolver({"intranet.test": ["127.0.0.1"], "mixed.test": ["93.184.216.34", "127.0.0.1"]})
    guard = AddressGuard(AllowList.parse(["127.0.0.1/32"]), resolve)
    fetcher = Fetcher(guard)
    try:
        got = await fetcher.fetch(f"http://intranet.test:{victim.port}/")
        assert got.body == b"secret"
        # the connection went to the checked address, with the name kept for Host: resolved once
        assert victim.hosts[-1] == f"intranet.test:{victim.port}" and resolve.calls.count("intranet.test") == 1
        with pytest.raises(FetchRefused):
            await Fetcher(AddressGuard(AllowList(), resolve)).fetch(f"http://mixed.test:{victim.port}/")
        by_name = Fetcher(AddressGuard(AllowList.parse([f"intranet.test:{victim.port}"]), resolve))
        assert (await by_name.fetch(f"http://intranet.test:{victim.port}/")).body == b"secret"
        with pytest.raises(FetchRefused):  # the name is allowed on its port only
            await by_name.fetch(f"http://intranet.test:{victim.port + 1 if victim.port < 65535 else 1}/")
        await by_name.aclose()
    finally:
        await fetcher.aclose()


def test_allow_list_parse_errors() -> None:
    for bad in ("10.0.0.0/33", "host:99999", "[::1]x"):
        with pytest.raises(ConfigError, match="VSM_FETCH_ALLOW"):
            AllowList.parse([bad])
    allow = AllowList.parse(["10.0.0.0/8", "[::1]:8080", "intranet.example"])
    assert allow.allows_host("Intranet.Example.", 443)


async def test_limits_and_conditional() -> None:
    big = b"x" * 5000
    bomb = gzip.compress(b"y" * 200_000)
    routes = {
        "/big": (200, {"Content-Type": "text/plain"}, big),
        "/bomb": (200, {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, bomb),
        "/slow": (200, {}, b"late"),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/gone": (404, {}, b""),
    }
    with Listener(routes).running() as site:
        base = f"http://127.0.0.1:{site.port}"
        fetcher = Fetcher(AddressGuard(AllowList.parse(["127.0.0.1/32"])), FetchLimits(4096, 0.5, 3))
        try:
            with pytest.raises(QuotaExceeded, match="4096"):
                await fetcher.fetch(base + "/big")
            with pytest.raises(QuotaExceeded):  # counted after decoding
                await fetcher.fetch(base + "/bomb")
            with pytest.raises(UpstreamTimeout):
                await fetcher.fetch(base + "/slow")
            with pytest.raises(Exception, match="redirects more than 3"):
                await fetcher.fetch(base + "/loop")
            with pytest.raises(Exception, match="HTTP 404"):
                await fetcher.fetch(base + "/gone")
            with pytest.raises(Exception, match="only http and https"):
                await fetcher.fetch("file:///etc/passwd")
        finally:
            await fetcher.aclose()


async def test_ingest_url_refuses_with_a_clear_error(stack: Stack, victim: Listener) -> None:
    """Through the tool: the seed is refused at once; a redirect found later fails that document."""
    # the stack allows 127.0.0.1/32, so use addresses outside it
    for url in ("http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", f"http://[::1]:{victim.port}/"):
        with pytest.raises(ToolFailed, match=r"forbidden: refused to fetch .* is a (private|link-local|loopback)"):
            await stack.call("ingest_url", "t-ssrf", urls=[url])
    with Listener({"/r": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")}).running() as site:
        done = await stack.ingest("ingest_url", "t-ssrf", urls=[f"http://127.0.0.1:{site.port}/r"])
    assert done["failed"] == 1 and "169.254.169.254 is a link-local address" in done["failures"][0]["reason"]
    assert victim.hits == 0
