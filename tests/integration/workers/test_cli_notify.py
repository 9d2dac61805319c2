"""`vsm-mcp notify …`: add a channel, list it, send a test message to a local Telegram Bot API,
read the ledger; bad input is one clear line. The commands run in-process (typer's runner);
the Bot API runs on its own thread and event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.asgi_server import serve_asgi
from tests.fakes.telegram_api import FakeTelegram
from vsm_mcp.cli import app


@pytest.fixture
def telegram() -> Iterator[tuple[FakeTelegram, str]]:
    tg = FakeTelegram()
    ready: list[str] = []
    stop = threading.Event()

    async def serve() -> None:
        async with serve_asgi(tg.app()) as url:
            ready.append(url)
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    for _ in range(200):
        if ready:
            break
        stop.wait(0.05)
    try:
        yield tg, ready[0]
    finally:
        stop.set()
        thread.join(10)


async def analyze_some(tmp_path: Path) -> None:
    """Ten good calls and five failing ones, rolled up by the analyzer."""
    from datetime import UTC, datetime, timedelta

    from tests.integration.workers.conftest import Env
    from tests.integration.workers.test_analyzer import add_episodes, calls
    from vsm_mcp.bus import MemoryBus
    from vsm_mcp.config import load_settings
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import get_tenant
    from vsm_mcp.workers.alerts import Thresholds
    from vsm_mcp.workers.analyzer import analyze_tenant

    settings = load_settings(home=tmp_path / ".vsm")
    db = Database(settings)
    try:
        tenant = (await get_tenant(db, "acme")).id
        t0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
        env = Env(settings, db, MemoryBus(), tenant, tenant)
        await add_episodes(env, tenant, calls(t0, 10) + calls(t0 + timedelta(seconds=5), 5, "tool_error"))
        await analyze_tenant(db, None, tenant, t0, t0 + timedelta(minutes=1), Thresholds(min_calls=10))
    finally:
        await db.aclose()


async def an_uncertain_delivery(tmp_path: Path) -> str:
    """A delivery to channel 'ops' left 'uncertain' (its sender died after sending)."""
    from vsm_mcp.config import load_settings
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import get_tenant
    from vsm_mcp.workers.notify import ledger
    from vsm_mcp.workers.notify.channels import ChannelStore

    db = Database(load_settings(home=tmp_path / ".vsm"))
    try:
        tenant = (await get_tenant(db, "acme")).id
        store = ChannelStore(db)
        await store.set_enabled(tenant, "ops", True)
        channel = next(c for c in await store.all(tenant) if c.name == "ops")
        key = f"{channel.id}:alert-9"
        message = {"subject": "s", "text": "the page that may not have arrived", "payload": {}}
        await ledger.ensure(db, tenant, key, channel.id, "alert.x.error_rate", "e9", message)
        assert (await ledger.claim(db, tenant, key, stale_after_s=60)).won
        assert (await ledger.claim(db, tenant, key, stale_after_s=0)).state == "uncertain"
        return key
    finally:
        await db.aclose()


def test_add_list_test_and_ledger(tmp_path: Path, telegram: tuple[FakeTelegram, str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tg, url = telegram
    for k, v in {"VSM_HOME": str(tmp_path / ".vsm"), "VSM_TELEGRAM_API_BASE": url,
                 "VSM_TELEGRAM_BOT_TOKEN": tg.token}.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()

    def vsm(*args: str) -> tuple[int, str, str]:
        r = runner.invoke(app, list(args), terminal_width=200)
        return r.exit_code, r.stdout, r.stderr

    assert vsm("migrate")[0] == 0
    assert vsm("tenants", "create", "acme")[0] == 0
    code, out, err = vsm("notify", "add", "ops", "--tenant", "acme", "--telegram", "-1001",
                         "--topics", "alert.#,policy.violation")
    assert code == 0, err
    assert json.loads(out) == {"name": "ops", "kind": "telegram", "config": {"chat_id": -1001},
                               "topics": ["alert.#", "policy.violation"], "enabled": True}
    code, out, err = vsm("notify", "add", "siem", "--tenant", "acme", "--webhook", "https://siem.test/h",
                         "--topics", "alert.#")
    assert code == 0, err
    assert json.loads(out)["config"]["secret"].startswith("whsec_")  # shown once, at creation
    code, out, _ = vsm("notify", "list", "--tenant", "acme")
    assert code == 0 and "ops" in out and "siem" in out and "whsec_" not in out  # masked in listings
    code, out, err = vsm("notify", "test", "ops", "--tenant", "acme")
    assert code == 0, err
    assert out.strip() == "sent" and len(tg.sent) == 1 and "test of channel ops" in tg.sent[0]["text"]
    code, out, _ = vsm("notify", "deliveries", "--tenant", "acme")
    assert code == 0 and "sent" in out and "notify.test" in out
    code, out, _ = vsm("notify", "enable", "ops", "--tenant", "acme", "--off")
    assert code == 0 and "disabled" in out
    code, out, err = vsm("states", "--tenant", "acme", "--json")
    assert code == 0 and json.loads(out) == [], err  # nothing analysed yet
    asyncio.run(analyze_some(tmp_path))
    code, out, err = vsm("states", "--tenant", "acme", "--json")
    assert code == 0, err
    rows = {r["system"]: r for r in json.loads(out)}
    assert set(rows) == {"upstream:echo", "tool:echo:ping"} and rows["upstream:echo"]["errors"] == {"tool_error": 5}
    assert rows["upstream:echo"]["calls"] == 15 and set(rows["upstream:echo"]["alerts"]) == {"error_rate"}
    assert vsm("states", "--tenant", "acme")[0] == 0  # the table form
    key = asyncio.run(an_uncertain_delivery(tmp_path))
    code, out, err = vsm("notify", "resend", key, "--tenant", "acme")
    assert code == 0 and out.strip() == "sent", err
    assert tg.sent[-1]["text"] == "the page that may not have arrived" and len(tg.sent) == 2
    code, out, err = vsm("notify", "resend", key, "--tenant", "acme")
    assert code != 0 and "is sent; only uncertain or failed ones are resent" in err
    for args, needle in [
        (("notify", "add", "x", "--tenant", "acme", "--topics", "alert.#"), "give exactly one of"),
        (("notify", "add", "x", "--tenant", "acme", "--webhook", "ftp://h/x", "--topics", "a"), "url must be http(s)"),
        (("notify", "add", "ops", "--tenant", "acme", "--telegram", "1", "--topics", "a"), "already exists"),
        (("notify", "add", "y", "--tenant", "acme", "--telegram", "1", "--topics", "al*rt"), "whole words"),
        (("notify", "test", "nope", "--tenant", "acme"), "no notification channel 'nope'"),
        (("notify", "list", "--tenant", "ghost"), "no tenant named 'ghost'"),
        (("notify", "resend", "k", "--tenant", "acme"), "no delivery with key 'k'"),
    ]:
        code, out, err = vsm(*args)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code != 0 and "Traceback" not in out + err, err
        assert lines[0].startswith("error:") and needle in " ".join(lines), err
