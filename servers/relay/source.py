"""Read a live source as a stream of items: Server-Sent Events (``http``/``https``) or WebSocket
messages (``ws``/``wss``, library ``websockets``).

Every connection goes to an address the SSRF guard has just checked: ``pin()`` resolves the host,
refuses what ``VSM_FETCH_ALLOW`` does not allow (vsm_mcp.ssrf.AddressGuard) and returns the address;
the connection is then opened to *that IP* while the ``Host`` header and the TLS name (SNI and
certificate check) stay the URL's host, so DNS cannot answer differently between the check and the
connect (rebinding). Each reconnect pins again. A dropped or failed connection is reported through
``on_drop`` and retried with backoff (SSE resumes with ``Last-Event-ID``; a WebSocket has no resume);
a refusal by the guard is not retried: it ends the reading (raises).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus, WebSocketException

from vsm_mcp.ssrf import Target, split_url

SCHEMES = {"http": 80, "https": 443, "ws": 80, "wss": 443}
MAX_EVENT_BYTES = 1024 * 1024  # one item's data; the rest of a longer one is dropped
USER_AGENT = "vsm-mcp-relay/0.1"
Pin = Callable[[], Awaitable[Target]]
OnDrop = Callable[[str], Awaitable[None]]

logging.getLogger("websockets.client").setLevel(logging.WARNING)


@dataclass(frozen=True)
class SourceItem:
    id: str
    event: str
    data: str


@dataclass(frozen=True)
class Backoff:
    first_s: float = 1.0
    max_s: float = 30.0


def check_source_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a source URL, or InvalidArguments saying what is wrong with it."""
    return split_url(url, SCHEMES, where="url", wanted="an SSE (http, https) or WebSocket (ws, wss) source",
                     credentials="the relay does not send them")


async def read_source(url: str, pin: Pin, on_drop: OnDrop, backoff: Backoff = Backoff()) -> AsyncIterator[SourceItem]:
    """Items of the source at ``url``, forever (cancel the consumer to stop)."""
    scheme, host, _ = check_source_url(url)
    reader = _read_ws if scheme in ("ws", "wss") else _read_sse
    state = SourceState()
    delay = backoff.first_s
    while True:
        target = await pin()  # FetchRefused / InvalidArguments end the relay: not a transient failure
        delivered = state.delivered
        try:
            async for item in reader(url, host, target, state):
                yield item
            problem = f"{url}: the source closed the connection"
        except (httpx.HTTPError, WebSocketException, OSError, TimeoutError, ValueError) as exc:
            problem = f"{url}: {_describe(exc)}"
        if state.delivered > delivered:
            delay = backoff.first_s  # it worked for a while: a fresh drop, not a failing source
        await on_drop(f"{problem}; reconnecting in {delay:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, backoff.max_s)


class SourceState:
    """What survives a reconnect: the SSE last event id, the count of items delivered."""

    def __init__(self) -> None:
        self.last_id = ""
        self.delivered = 0


class SourceProblem(ValueError):
    """A connection that worked but is not a source we can read (status, content type)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"the WebSocket handshake was answered with HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


async def _read_sse(url: str, host: str, target: Target, state: SourceState) -> AsyncIterator[SourceItem]:
    parts = urlsplit(url)
    pinned = target.pinned_url(url)
    headers = {"accept": "text/event-stream", "host": parts.netloc, "user-agent": USER_AGENT}
    if state.last_id:
        headers["last-event-id"] = state.last_id
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), trust_env=False,
                                 follow_redirects=False) as http:
        request = http.build_request("GET", pinned, headers=headers,
                                     extensions={"sni_hostname": host} if parts.scheme == "https" else {})
        resp = await http.send(request, stream=True)
        try:
            if 300 <= resp.status_code < 400:
                raise SourceProblem(f"answered HTTP {resp.status_code} (redirects are not followed: relay the "
                                    f"final URL {resp.headers.get('location', '')!r})")
            if resp.status_code >= 400:
                raise SourceProblem(f"answered HTTP {resp.status_code}")
            ctype = resp.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                raise SourceProblem(f"is not an SSE stream (content-type {ctype!r}, expected text/event-stream)")
            async for item in parse_sse(resp.aiter_lines(), state):
                yield item
        finally:
            await resp.aclose()


async def parse_sse(lines: AsyncIterator[str], state: SourceState) -> AsyncIterator[SourceItem]:
    """WHATWG EventSource parsing (minus ``retry``): one item per dispatched event."""
    event, data, size = "", list[str](), 0
    async for line in lines:
        if line == "":
            if data:
                state.delivered += 1
                yield SourceItem(state.last_id, event or "message", "\n".join(data))
            event, data, size = "", [], 0
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            size += len(value) + 1
            if size <= MAX_EVENT_BYTES:
                data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            state.last_id = value


async def _read_ws(url: str, host: str, target: Target, state: SourceState) -> AsyncIterator[SourceItem]:
    # host/port: where the TCP connection goes; the URI's host stays in Host and, for wss, in
    # SNI and the certificate check. proxy=None: a proxy from the environment would bypass the pin.
    async with ws_connect(url, host=str(target.address), port=target.port, proxy=None, open_timeout=30,
                          max_size=MAX_EVENT_BYTES, user_agent_header=USER_AGENT) as ws:
        async for message in ws:
            text = message if isinstance(message, str) else message.decode("utf-8", errors="replace")
            state.delivered += 1
            yield SourceItem(str(state.delivered), "message", text)
