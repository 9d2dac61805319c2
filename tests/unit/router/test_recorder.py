"""router/recorder.py: bounded queue (drop and count, never block), batches, a last drain on close."""

from __future__ import annotations

import anyio
import pytest

from router.recorder import Recorder
from vsm_mcp.auth import Principal
from vsm_mcp.hooks import CallInfo, CallOutcome

pytestmark = pytest.mark.anyio


class Seen:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.four = anyio.Event()

    async def observe(self, call: CallInfo, outcome: CallOutcome) -> None:
        self.calls.append(call.public_name)
        if len(self.calls) == 4:
            self.four.set()


def record(rec: Recorder, i: int) -> None:
    p = Principal(tenant_id="t", scopes=frozenset({"*"}), key_id="k")
    rec.record(CallInfo(p, f"s__t{i}", "s", f"t{i}", {}), CallOutcome(outcome="ok", duration_ms=1.0))


async def test_bound_batches_and_final_drain() -> None:
    seen = Seen()
    rec = Recorder(None, [seen], interval=3600, batch=4, capacity=10)
    record(rec, -1)  # before start: ignored, not queued
    async with anyio.create_task_group() as tg:
        await rec.start(tg)
        for i in range(4):  # a full batch wakes the writer long before the interval
            record(rec, i)
        with anyio.fail_after(5):
            await seen.four.wait()
        for i in range(4, 16):  # 12 more while the writer sleeps: 10 fit, 2 are dropped
            record(rec, i)
        assert rec.dropped == 2
        await rec.aclose()  # drains the 10 without waiting for the interval
        assert seen.calls == [f"s__t{i}" for i in range(14)]
        record(rec, 99)  # after close: ignored
        assert len(seen.calls) == 14 and rec.dropped == 2
