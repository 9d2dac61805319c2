"""The SSE hub's fan-out rules, without a server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.edge.sse import SseConnection, SseHub, encode_event, parse_topics
from router.edge.telegram import parse_chat_bindings, result_text
from vsm_mcp.bus import MemoryBus
from vsm_mcp.bus.events import Event
from vsm_mcp.errors import ConfigError, InvalidArguments
from vsm_mcp.telemetry import Metrics


def hub() -> SseHub:
    return SseHub(MemoryBus(), None, Metrics(), queue_size=4, heartbeat_s=60, replay_max=100)


def test_dispatch_only_to_matching_connections_of_the_tenant_with_one_encoding() -> None:
    h = hub()
    a1, a2 = SseConnection("a", ("tool.*",), 4), SseConnection("a", ("tool.*",), 4)
    a_plan, b = SseConnection("a", ("plan.#",), 4), SseConnection("b", ("#",), 4)
    for c in (a1, a2, a_plan, b):
        h.register(c)
    e = Event(topic="tool.called", tenant="a")
    h.dispatch(e)
    assert [len(c.buf) for c in (a1, a2, a_plan, b)] == [1, 1, 0, 0]
    assert a1.buf[0][1] is a2.buf[0][1]  # encoded once, shared by every connection
    assert a1.buf[0] == (e.id, encode_event(e))
    h.unregister(a1)
    h.unregister(a1)  # idempotent
    assert h.connections == 3


def test_a_full_connection_overflows_and_frees_its_buffer() -> None:
    c = SseConnection("a", ("#",), 3)
    assert all(c.offer(str(i), b"x") for i in range(3))
    assert not c.offer("3", b"x")
    assert c.overflowed and not c.buf and c.wake.is_set()
    assert not c.offer("4", b"x")


def test_encode_event_is_one_sse_frame() -> None:
    e = Event(topic="a.b", tenant="t", data={"text": "line1\nline2"})
    frame = encode_event(e).decode()
    assert frame.endswith("\n\n") and frame.count("\n\n") == 1  # newlines in data are JSON-escaped
    lines = frame.strip().split("\n")
    assert lines[0] == f"id: {e.id}" and lines[1] == "event: a.b"
    assert Event.model_validate_json(lines[2].removeprefix("data: ")) == e


@given(st.lists(st.sampled_from(["tool.*", "plan.#", "a", "#"]), min_size=1, max_size=6))
def test_parse_topics_is_sorted_unique(pats: list[str]) -> None:
    assert parse_topics(",".join(pats)) == tuple(sorted(set(pats)))


def test_parse_topics_default_and_errors() -> None:
    assert parse_topics(None) == ("#",) and parse_topics(" ") == ("#",)
    with pytest.raises(InvalidArguments, match="whole words"):
        parse_topics("tool.x*")


def test_chat_bindings() -> None:
    assert parse_chat_bindings(" 12=acme, -100200=default ,") == {12: "acme", -100200: "default"}
    for bad in ("12", "x=acme", "12="):
        with pytest.raises(ConfigError, match="VSM_TELEGRAM_CHATS"):
            parse_chat_bindings(bad)


def test_result_text() -> None:
    import mcp.types as mt

    ok = mt.CallToolResult(content=[mt.TextContent(type="text", text="hi")])
    err = mt.CallToolResult(content=[mt.TextContent(type="text", text="bad")], is_error=True)
    structured = mt.CallToolResult(content=[], structured_content={"n": 1})
    assert (result_text(ok), result_text(err), result_text(structured)) == ("hi", "tool error: bad", '{"n": 1}')


@pytest.mark.anyio
async def test_hub_that_falls_behind_tells_every_client_to_replay_and_recovers() -> None:
    import asyncio

    bus = MemoryBus()
    h = SseHub(bus, None, Metrics(), queue_size=100, heartbeat_s=60, replay_max=100, hub_queue=5)
    await h.start()
    try:
        old = SseConnection("a", ("#",), 100)
        h.register(old)
        for i in range(10):  # no await in between: the hub's own subscription overflows
            await bus.publish(Event(topic="x", tenant="a", data={"i": i}))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if old.overflowed:
                break
        assert old.overflowed
        h.unregister(old)
        new = SseConnection("a", ("#",), 100)
        h.register(new)
        e = Event(topic="x", tenant="a")
        for _ in range(200):  # the hub resubscribed: new events flow again
            await bus.publish(e)
            await asyncio.sleep(0.01)
            if new.buf:
                break
        assert new.buf and new.buf[0][0] == e.id
    finally:
        await h.aclose()
    assert bus.subscriber_count == 0


class _Writer:
    """A stand-in DirectWriter that records its writes in a shared log."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log, self.fd = name, log, -1
        self.alive = True

    def buffered(self) -> int:
        return 0

    def write(self, chunk: bytes) -> None:
        self.log.append(self.name)


@pytest.mark.anyio
async def test_deliver_lets_the_loop_run_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from router.edge import sse

    monkeypatch.setattr(sse, "SLICE", 2)
    h = hub()
    log: list[str] = []
    conns = [SseConnection("a", ("#",), 4) for _ in range(5)]
    for i, c in enumerate(conns):
        c.writer = _Writer(f"c{i}", log)  # type: ignore[assignment]
        h.register(c)

    async def ticker() -> None:
        while True:
            log.append("tick")
            await asyncio.sleep(0)

    tick = asyncio.get_running_loop().create_task(ticker())
    await asyncio.sleep(0)
    log.clear()
    await h.deliver(Event(topic="x", tenant="a"))
    tick.cancel()
    writes = [x for x in log if x != "tick"]
    assert sorted(writes) == [f"c{i}" for i in range(5)]  # every connection exactly once
    # other work ran between the slices of two, and not inside one
    shape = ["tick" if x == "tick" else "w" for x in log]
    assert shape[:7] == ["w", "w", "tick", "w", "w", "tick", "w"]
    h.dispatch(Event(topic="x", tenant="a"))  # the synchronous form writes everything at once
    assert len([x for x in log if x != "tick"]) == 10
