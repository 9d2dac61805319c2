"""The workers on the durable spine (DBOS, SQLite system database): episodes → analyzer workflow
→ alert on the bus → notification routing → a durable delivery → a local Telegram Bot API; the
analyzer's schedule; one delivery per key however often the alert is raised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dbos import DBOS, SetWorkflowID

from tests.asgi_server import serve_asgi
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.workers.conftest import Env
from tests.integration.workers.test_analyzer import add_episodes, calls, states
from tests.polling import eventually
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.durable import Spine
from vsm_mcp.workers import jobs
from vsm_mcp.workers.notify import ledger
from vsm_mcp.workers.notify.channels import ChannelStore
from vsm_mcp.workers.runtime import Workers

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


@dataclass
class Rig:
    env: Env
    workers: Workers
    telegram: FakeTelegram


@pytest.fixture
async def rig(sqlite_env: Env, tmp_path: Path) -> AsyncIterator[Rig]:
    tg = FakeTelegram()
    async with serve_asgi(tg.app()) as url:
        settings = load_settings(
            home=tmp_path / ".vsm", telegram_api_base=url, telegram_bot_token=tg.token, notify_backoff_s=0.05,
            analyzer_interval_s=1, analyzer_min_calls=10,
        )
        ctx = ServerContext(settings=settings, db=sqlite_env.db, bus=sqlite_env.bus)
        async with Spine(settings, role="test").running(), Workers(ctx).running() as workers:
            yield Rig(sqlite_env, workers, tg)




async def test_episodes_to_alert_to_one_telegram_message_per_key(rig: Rig) -> None:
    a = rig.env.a
    await ChannelStore(rig.env.db).add(a, "ops", "telegram", {"chat_id": 42}, ["alert.*.error_rate"])
    await add_episodes(rig.env, a, calls(T0, 15) + calls(T0 + timedelta(seconds=5), 15, "tool_error"))
    context = {"interval_s": 60, "grace_s": 0}
    with SetWorkflowID("test-window-1"):
        await (await DBOS.start_workflow_async(jobs.analyze_window, T0 + timedelta(seconds=60), context)).get_result()
    await eventually(lambda: len(rig.telegram.sent) == 1, 20)  # the upstream's alert (it covers its tool's)
    assert [m["chat"]["id"] for m in rig.telegram.sent] == [42]
    assert rig.telegram.sent[0]["text"].splitlines()[0] == "[FIRING] error_rate on upstream:echo"
    assert set(await states(rig.env, a)) == {"upstream:echo", "tool:echo:ping"}
    # The same window again (a re-run after a crash): the alerts are raised again, with the
    # same keys — the deliveries already exist, nothing is sent twice.
    router = rig.workers.router
    assert router is not None
    before = router.routed
    with SetWorkflowID("test-window-1-again"):
        await (await DBOS.start_workflow_async(jobs.analyze_window, T0 + timedelta(seconds=60), context)).get_result()
    await eventually(lambda: router.routed == before + 1, 20)
    for key in [k for k in await _keys(rig.env, a)]:
        result = await (await DBOS.retrieve_workflow_async(f"notify:{key}")).get_result()
        assert result["state"] == "sent"
    assert len(rig.telegram.sent) == 1 and len(rig.telegram.calls) == 1


async def test_retries_sleep_durably_until_the_remote_recovers(rig: Rig) -> None:
    a = rig.env.a
    rig.telegram.fail_next = [(503, None), (429, 0.1)]
    ch = await ChannelStore(rig.env.db).add(a, "ops", "telegram", {"chat_id": 42}, ["alert.#"])
    msg = {"subject": "s", "text": "hello", "payload": {}}
    wf = await jobs.enqueue_delivery(a, f"{ch.id}:k1", ch.id, "alert.x.y", "e1", msg)
    again = await jobs.enqueue_delivery(a, f"{ch.id}:k1", ch.id, "alert.x.y", "e1", msg)  # same key
    assert wf == again
    result = await (await DBOS.retrieve_workflow_async(wf)).get_result()
    assert result["state"] == "sent" and result["attempts"] == 3
    assert len(rig.telegram.calls) == 3 and len(rig.telegram.sent) == 1
    steps = await DBOS.list_workflow_steps_async(wf)
    assert [s["function_name"].rsplit(".", 1)[-1] for s in steps].count("delivery_attempt") == 3
    row = await ledger.get(rig.env.db, a, f"{ch.id}:k1")
    assert row is not None and row.state == "sent" and row.message["text"] == "hello"


async def test_the_analyzer_schedule_is_applied_and_fires(rig: Rig) -> None:
    schedule = await DBOS.get_schedule_async(jobs.SCHEDULE)
    assert schedule is not None and schedule["schedule"] == "*/1 * * * * *"
    assert schedule["queue_name"] == jobs.ANALYZER_QUEUE

    async def fired() -> list[object]:
        return await DBOS.list_workflows_async(name=jobs.analyze_window.__qualname__, status="SUCCESS")

    for _ in range(100):  # 20 s; it fires every second
        if await fired():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the schedule never fired")


async def _keys(env: Env, tenant: str) -> list[str]:
    from sqlmodel import select

    from vsm_mcp.workers.notify.tables import NotificationDelivery

    async with env.db.tenant(tenant) as s:
        return [r.key for r in (await s.execute(select(NotificationDelivery))).scalars()]
