from __future__ import annotations

import asyncio

import pytest

from servers.llm_cdn.singleflight import SingleFlight

pytestmark = pytest.mark.anyio


async def test_concurrent_identical_calls_run_once() -> None:
    calls = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    sf: SingleFlight[int] = SingleFlight()
    tasks = [asyncio.create_task(sf.do("k", work)) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert [r for r, _ in results] == [42] * 100
    assert sum(1 for _, shared in results if not shared) == 1
    assert len(sf) == 0


async def test_error_reaches_every_waiter_and_next_call_retries() -> None:
    attempts = 0

    async def boom() -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        raise ValueError("nope")

    sf: SingleFlight[int] = SingleFlight()
    results = await asyncio.gather(*(sf.do("k", boom) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert attempts == 1
    with pytest.raises(ValueError):
        await sf.do("k", boom)
    assert attempts == 2


async def test_a_cancelled_waiter_does_not_cancel_the_call() -> None:
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "done"

    sf: SingleFlight[str] = SingleFlight()
    first = asyncio.create_task(sf.do("k", work))
    second = asyncio.create_task(sf.do("k", work))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert (await second)[0] == "done"


async def test_different_keys_do_not_coalesce() -> None:
    calls: list[str] = []

    async def work(k: str) -> str:
        calls.append(k)
        await asyncio.sleep(0)
        return k

    sf: SingleFlight[str] = SingleFlight()
    out = await asyncio.gather(*(sf.do(k, lambda k=k: work(k)) for k in "abc"))
    assert sorted(r for r, _ in out) == ["a", "b", "c"] and sorted(calls) == ["a", "b", "c"]
