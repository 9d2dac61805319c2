"""``GET /v1/events?topics=tool.*,plan.#`` — Server-Sent Events from the bus.

One ``SseHub`` per process holds one bus subscription (``#``) and fans each event out to the
connections of the event's tenant whose patterns match. An event's SSE frame (and its HTTP
chunk) is encoded once per event, not once per connection.

Two write paths, chosen per connection when it opens:

* direct (uvicorn + httptools, ``VSM_SSE_DIRECT_WRITE``, router/edge/sse_direct.py): once live,
  the hub writes the shared chunk to each connection's transport in one synchronous loop — no
  task wakeup and no ASGI message per event. A connection whose unsent bytes exceed
  ``VSM_SSE_BUFFER_BYTES`` is overflowed. Its own task only sleeps until it ends.
* portable (any other ASGI server, or a ``send`` wrapper we do not know): the hub appends the
  frame to the connection's bounded buffer (``VSM_SSE_QUEUE_SIZE``) and wakes its task, which
  writes through ``send``.

Either way a client that falls behind gets ``event: overflow`` (with the last id it was sent,
to reconnect from) and is closed — the hub never waits for a connection, so one slow client
never slows another.

Replay with no gap and no duplicate: a connection is registered with the hub *before* the log
is read, so live events arriving meanwhile are buffered; the replay (event log plus the hub's
ring of recent events, which covers rows not yet written by another replica) is sent first,
then the buffer, skipping ids already replayed — and only then, in the same synchronous step,
does a direct connection switch to direct writes.

Heartbeats come from one hub-wide timer (``: hb`` comment every ``VSM_SSE_HEARTBEAT_S``), so an
idle connection costs no timer of its own. A disconnect is noticed by a small watcher on the
ASGI ``receive`` channel; either way the connection unregisters and frees its buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterator

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from router.edge._auth import Authenticate, error_response
from router.edge.sse_direct import DirectWriter, direct_writer
from router.upstreams.http11 import http_chunk
from vsm_mcp.auth import Principal, grants
from vsm_mcp.bus import Bus, Overflow, Subscription, check_patterns, topic_matches
from vsm_mcp.bus.events import Event, EventLog
from vsm_mcp.errors import Forbidden, InvalidArguments, VsmError
from vsm_mcp.telemetry import Metrics

log = logging.getLogger("vsm_mcp.sse")

HEARTBEAT = b": hb\n\n"
HEARTBEAT_CHUNK = http_chunk(HEARTBEAT)
GRACE_S = 10.0  # how long an overflowed client gets to read its overflow notice
# Direct connections written per turn of the event loop (SseHub.deliver).
SLICE = 1024
RECENT = 4096  # events the hub remembers for replay of rows another replica has not written yet
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def encode_event(event: Event) -> bytes:
    """The SSE frame of one event (``id``, ``event`` = topic, ``data`` = the envelope as JSON)."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event.id.encode(), event.topic.encode(), event.model_dump_json().encode(),
    )


class SseConnection:
    """One client's bounded buffer of pre-encoded frames."""

    __slots__ = (
        "tenant", "patterns", "maxsize", "buf", "wake", "overflowed", "closed", "skip", "last_id", "sending", "gone",
        "reason", "writer", "max_bytes", "written", "flushed_mark", "stall_since", "stall_obj",
    )

    def __init__(self, tenant: str, patterns: tuple[str, ...], maxsize: int, max_bytes: int = 256 * 1024) -> None:
        self.tenant = tenant
        self.patterns = patterns
        self.maxsize = maxsize
        self.max_bytes = max_bytes  # unsent bytes a live direct-write connection may pile up
        self.buf: deque[tuple[str, bytes]] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.skip: set[str] = set()  # ids already sent by the replay
        self.last_id = ""
        self.reason = ""  # why an overflowed connection is being closed (sent to the client)
        self.sending: asyncio.Timeout | None = None  # set while a write to the client is in flight
        self.gone = False  # the client disconnected
        # Set once the connection is live on the direct path (replay done): from then on the hub
        # writes each event's chunk to the socket itself and never wakes this connection's task.
        self.writer: DirectWriter | None = None
        # Zombie watch (SseHub._watch_stalls): bytes handed to the writer, and the progress last seen.
        self.written = 0
        self.flushed_mark = 0
        self.stall_since: float | None = None
        self.stall_obj: object = None

    def offer(self, event_id: str, frame: bytes) -> bool:
        """Buffer one frame; False when the client is too far behind (it is then closed)."""
        if self.overflowed or self.closed:
            return False
        if len(self.buf) >= self.maxsize:
            self.overflow()
            return False
        self.buf.append((event_id, frame))
        self.wake.set()
        return True

    def replayed(self, event_id: str) -> bool:
        """True (once) for an event the replay already sent. The log records an event when it is
        published and the hub dispatches it a moment later, so it can reach a connection after
        that connection replayed it — on the buffered path and, once live, on the direct one."""
        if event_id in self.skip:
            self.skip.discard(event_id)
            return True
        return False

    def write(self, event_id: str, chunk: bytes) -> bool:
        """Write one pre-framed chunk to a live direct connection; False if it is not written."""
        writer = self.writer
        assert writer is not None
        if self.overflowed or self.closed or not writer.alive:
            return False
        if self.replayed(event_id):
            return True
        if writer.buffered() > self.max_bytes:
            self.overflow(f"client fell more than {self.max_bytes} bytes behind")
            return False
        writer.write(chunk)
        self.written += len(chunk)
        if event_id:
            self.last_id = event_id
        return True

    def overflow(self, reason: str = "") -> None:
        """Mark the client as too slow; a write stuck on its full socket is aborted at once."""
        self.overflowed = True
        self.reason = self.reason or reason or f"client fell more than {self.maxsize} events behind"
        self.buf.clear()
        self.wake.set()
        if self.sending is not None:
            self.sending.reschedule(asyncio.get_running_loop().time())

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class SseHub:
    """The process-wide fan-out from the bus to SSE connections."""

    def __init__(
        self, bus: Bus, event_log: EventLog | None, metrics: Metrics, *, queue_size: int,
        heartbeat_s: float, replay_max: int, hub_queue: int = 100_000, buffer_bytes: int = 256 * 1024,
        direct_write: bool = True, stall_s: float = 60.0,
    ) -> None:
        self.bus = bus
        self.stall_s = stall_s  # no write progress for this long: a zombie connection, closed
        self.zombies = 0
        self.event_log = event_log
        self.metrics = metrics
        self.queue_size = queue_size
        self.buffer_bytes = buffer_bytes
        self.direct_write = direct_write  # False: always the portable ASGI path (sse_direct.py says why not)
        self.fanout_s = 0.0  # time spent writing events to direct connections (benchmark, curiosity)
        # Connections that went live on each path since start (tests and the benchmark check these).
        self.direct_connections = 0
        self.asgi_connections = 0
        self.heartbeat_s = heartbeat_s
        self.replay_max = replay_max
        self.hub_queue = hub_queue
        # tenant -> patterns -> connections: one topic match per distinct pattern set per event.
        self._conns: dict[str, dict[tuple[str, ...], set[SseConnection]]] = {}
        self._recent: deque[Event] = deque(maxlen=RECENT)
        self._tasks: list[asyncio.Task[None]] = []
        self.connections = 0

    async def start(self) -> None:
        """Subscribe (a bus failure here fails start-up loudly) and start the pump and heartbeat."""
        if not self._tasks:
            first = await self.bus.subscribe(["#"], maxsize=self.hub_queue)
            self._tasks = [
                asyncio.create_task(self._pump(first), name="vsm-sse-pump"),
                asyncio.create_task(self._heartbeat(), name="vsm-sse-heartbeat"),
                asyncio.create_task(self._watch_stalls(), name="vsm-sse-stall-watch"),
            ]

    async def aclose(self) -> None:
        for conns in self._conns.values():
            for group in conns.values():
                for conn in group:
                    conn.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _pump(self, sub: Subscription) -> None:
        while True:
            try:
                async for event in sub:
                    await self.deliver(event)
            except Overflow:
                # The hub itself fell behind: every client may have a gap, so tell each one to
                # reconnect (and replay from the log) rather than deliver silently incomplete streams.
                log.warning("SSE hub fell behind the bus; closing connections so they replay")
                self._overflow_all()
            except VsmError as exc:  # the bus went away: clients reconnect and replay once it is back
                log.warning("SSE hub lost its bus subscription: %s", exc.message)
                self._overflow_all()
            finally:
                await sub.aclose()
            sub = await self._resubscribe()

    async def _resubscribe(self) -> Subscription:
        delay = 0.5
        while True:
            try:
                return await self.bus.subscribe(["#"], maxsize=self.hub_queue)
            except VsmError as exc:
                log.warning("SSE hub cannot resubscribe (%s); retrying in %.1fs", exc.message, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            for conns in self._conns.values():
                for group in conns.values():
                    for conn in tuple(group):
                        if conn.writer is not None:
                            if conn.writer.alive and not conn.writer.buffered():  # busy sockets need none
                                conn.write("", HEARTBEAT_CHUNK)
                        elif not conn.buf:
                            conn.buf.append(("", HEARTBEAT))
                            conn.wake.set()

    async def _watch_stalls(self) -> None:
        """Close connections that made no write progress for ``stall_s`` (a client that stopped
        reading while too little was sent to overflow it): an ``alert.<tenant>.zombie`` each."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.stall_s / 4)
            now = loop.time()
            conns = [c for groups in self._conns.values() for group in groups.values() for c in group]
            for conn in conns:
                if conn.overflowed or conn.closed or not _stalled(conn, now, self.stall_s):
                    continue
                conn.overflow(f"no write progress for {self.stall_s:g}s")
                self.zombies += 1
                self.metrics.zombies.labels("sse", conn.tenant).inc()
                try:
                    await self.bus.publish(Event(
                        topic=f"alert.{conn.tenant}.zombie", tenant=conn.tenant, type="alert",
                        data={"kind": "sse", "reason": conn.reason, "topics": list(conn.patterns),
                              "last_event_id": conn.last_id, "action": "closed"},
                    ))
                except Exception:  # best effort: the connection is closed either way
                    log.warning("could not publish an SSE zombie alert", exc_info=True)

    def _overflow_all(self) -> None:
        for conns in self._conns.values():
            for group in conns.values():
                for conn in group:
                    conn.overflow()

    def dispatch(self, event: Event) -> None:
        """Hand ``event`` to every matching connection of its tenant (never blocks, never waits)."""
        for _ in self._dispatch_steps(event):
            pass

    async def deliver(self, event: Event) -> None:
        """``dispatch`` for the pump: between slices of ``SLICE`` direct connections the event loop
        runs other work. Written in one go, one event to 10,000 connections held the loop ~80 ms
        (every tool call through the router waited that long); sliced, ~8 ms at a time. Order per
        connection is kept: the pump finishes one event before it takes the next."""
        for _ in self._dispatch_steps(event):
            await asyncio.sleep(0)

    def _dispatch_steps(self, event: Event) -> Iterator[None]:
        """The work of one dispatch; yields between slices of direct writes."""
        self._recent.append(event)
        conns = self._conns.get(event.tenant)
        if not conns:
            return
        frame = chunk = b""
        dropped = 0
        direct: list[SseConnection] = []
        for patterns, group in list(conns.items()):
            if not any(topic_matches(p, event.topic) for p in patterns):
                continue
            if not frame:
                frame = encode_event(event)
                chunk = http_chunk(frame)  # framed once too: every direct connection writes these bytes
            for conn in tuple(group):
                if conn.writer is not None:
                    direct.append(conn)
                elif not conn.offer(event.id, frame):
                    dropped += 1
        if dropped:
            self.metrics.sse_dropped.labels("overflow").inc(dropped)
        for start in range(0, len(direct), SLICE):
            if start:
                yield
            began = time.perf_counter()
            sent, dropped = self._fan_out(direct[start:start + SLICE], event.id, chunk)
            self.fanout_s += time.perf_counter() - began
            if sent:
                self.metrics.sse_events.inc(sent)
            if dropped:
                self.metrics.sse_dropped.labels("overflow").inc(dropped)

    @staticmethod
    def _fan_out(direct: list[SseConnection], event_id: str, chunk: bytes) -> tuple[int, int]:
        """Write ``chunk`` to the direct connections: (written, dropped)."""
        sent = dropped = 0
        for conn in direct:
            if conn.write(event_id, chunk):
                sent += 1
            else:
                dropped += 1
        return sent, dropped

    def register(self, conn: SseConnection) -> None:
        self._conns.setdefault(conn.tenant, {}).setdefault(conn.patterns, set()).add(conn)
        self.connections += 1
        self.metrics.sse_connections.inc()

    def unregister(self, conn: SseConnection) -> None:
        groups = self._conns.get(conn.tenant, {})
        group = groups.get(conn.patterns)
        if group is None or conn not in group:
            return
        group.discard(conn)
        if not group:
            del groups[conn.patterns]
        if not groups:
            self._conns.pop(conn.tenant, None)
        self.connections -= 1
        self.metrics.sse_connections.dec()

    async def replay(self, conn: SseConnection, after_id: str) -> tuple[list[Event], bool]:
        """Events of the connection's tenant after ``after_id`` (log ∪ recent ring), oldest first,
        at most ``replay_max`` of them; the flag says whether more remain."""
        found: dict[str, Event] = {}
        if self.event_log is not None:
            for e in await self.event_log.replay(conn.tenant, after_id, conn.patterns, limit=self.replay_max):
                found[e.id] = e
        for e in list(self._recent):
            if e.tenant == conn.tenant and e.id > after_id and any(topic_matches(p, e.topic) for p in conn.patterns):
                found.setdefault(e.id, e)
        ordered = [found[k] for k in sorted(found)]
        return ordered[: self.replay_max], len(ordered) > self.replay_max


def parse_topics(raw: str | None) -> tuple[str, ...]:
    """``?topics=a.*,b.#`` → patterns; missing means every topic (``#``)."""
    if raw is None or not raw.strip():
        return ("#",)
    return tuple(sorted(set(check_patterns([p.strip() for p in raw.split(",") if p.strip()]))))


class EventsEndpoint:
    """The ASGI endpoint (plain ASGI: no per-event framework overhead on the hot path)."""

    def __init__(self, hub: SseHub, authenticate: Authenticate) -> None:
        self.hub = hub
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            principal = await self.authenticate(request)
            if not grants(principal.scopes, ["events:read"]):
                raise Forbidden("reading events needs the scope events:read (or events, events:*)")
            patterns = parse_topics(request.query_params.get("topics"))
            after = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or ""
            if len(after) > 64:
                raise InvalidArguments("Last-Event-ID is longer than 64 characters")
        except VsmError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self._stream(principal, patterns, after, scope, receive, send)

    async def _stream(
        self, principal: Principal, patterns: tuple[str, ...], after: str, scope: Scope, receive: Receive,
        send: Send,
    ) -> None:
        hub = self.hub
        conn = SseConnection(principal.tenant_id, patterns, hub.queue_size, hub.buffer_bytes)
        hub.register(conn)  # before the replay, so nothing published meanwhile is missed
        watcher = asyncio.create_task(_watch_disconnect(receive, conn))
        complete = False
        writer: DirectWriter | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": b": connected\n\n", "more_body": True})
            if hub.direct_write:
                writer = direct_writer(scope, send)
            if after:
                await self._send_replay(conn, after, send)
            if writer is not None:
                _go_live(conn, writer)
                hub.direct_connections += 1
                await _wait_closed(conn)
            else:
                hub.asgi_connections += 1
                await self._pump(conn, send)
        except TimeoutError:
            pass  # aborted write to a client that stopped reading: overflow is sent below
        except OSError:
            complete = True  # the client went away mid-write
        finally:
            hub.unregister(conn)
            conn.buf.clear()
            conn.writer = None
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if not complete and not conn.gone and not await _finish(conn, send, GRACE_S) and writer is not None:
            writer.abort()  # unreadable for the whole grace period: free its unsent bytes now

    async def _send_replay(self, conn: SseConnection, after: str, send: Send) -> None:
        events, truncated = await self.hub.replay(conn, after)
        if truncated:
            # Never a silent gap: send the oldest batch, then ask the client to come back for more.
            conn.overflow(f"more than {self.hub.replay_max} events to replay; this batch ends here")
        if not events:
            return
        conn.skip = {e.id for e in events}
        conn.last_id = events[-1].id
        await send({"type": "http.response.body", "body": b"".join(encode_event(e) for e in events),
                    "more_body": True})
        self.hub.metrics.sse_events.inc(len(events))

    async def _pump(self, conn: SseConnection, send: Send) -> None:
        sent_metric = self.hub.metrics.sse_events
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            if conn.overflowed or conn.closed:
                return
            frames, events = _take(conn)
            if not frames:
                continue
            # A cheap, unscheduled timeout the hub can fire to abort a write stuck on a full socket.
            async with asyncio.timeout(None) as conn.sending:
                await send({"type": "http.response.body", "body": b"".join(frames), "more_body": True})
            conn.sending = None
            if events:
                sent_metric.inc(events)


def _stalled(conn: SseConnection, now: float, stall_s: float) -> bool:
    """True when ``conn`` has had output waiting, with none of it taken, for ``stall_s``."""
    if conn.writer is not None:  # direct: progress = the kernel took bytes since the last look
        pending = conn.writer.buffered()
        flushed = conn.written - pending
        if pending == 0 or flushed > conn.flushed_mark:
            conn.flushed_mark, conn.stall_since = flushed, None
            return False
    elif conn.sending is not None:  # ASGI path: the same write still in flight since the last look
        if conn.stall_obj is not conn.sending:
            conn.stall_obj, conn.stall_since = conn.sending, now
            return False
    else:
        conn.stall_obj, conn.stall_since = None, None
        return False
    if conn.stall_since is None:
        conn.stall_since = now
        return False
    return now - conn.stall_since >= stall_s


def _take(conn: SseConnection) -> tuple[list[bytes], int]:
    frames: list[bytes] = []
    events = 0
    while conn.buf:
        event_id, frame = conn.buf.popleft()
        if event_id:
            if conn.replayed(event_id):
                continue
            conn.last_id = event_id
            events += 1
        frames.append(frame)
    return frames, events


def _go_live(conn: SseConnection, writer: DirectWriter) -> None:
    """Hand a connection over to direct writes with no gap and no duplicate.

    Live events that arrived during the replay sit in the buffer; they are written (minus the
    ids the replay already sent) and the writer installed in one synchronous step, so no event
    can fall between the two: the hub runs on this same loop.
    """
    if conn.overflowed or conn.closed:
        return
    frames, _ = _take(conn)
    conn.writer = writer
    if frames:
        conn.write(conn.last_id, http_chunk(b"".join(frames)))


async def _wait_closed(conn: SseConnection) -> None:
    """A live direct connection's task sleeps until the hub overflows it or the client leaves."""
    while not (conn.overflowed or conn.closed):
        await conn.wake.wait()
        conn.wake.clear()


async def _finish(conn: SseConnection, send: Send, grace: float) -> bool:
    """End the response: tell an overflowed client why first. False when the client stayed
    unreadable for ``grace`` seconds (the caller then drops the connection)."""
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(grace):
            if conn.overflowed:
                data = json.dumps({
                    "reason": conn.reason,
                    "last_event_id": conn.last_id,
                    "hint": "reconnect with Last-Event-ID to replay what was missed",
                })
                body = f"event: overflow\ndata: {data}\n\n".encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return True
    return False


async def _watch_disconnect(receive: Receive, conn: SseConnection) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            conn.gone = True
            conn.close()
            return
