"""The notifier against local servers that speak the real protocols: a Telegram Bot API, a
signed-webhook receiver and an SMTP server (aiosmtpd). Retries with backoff on 429/5xx/4xx-SMTP,
and one send per idempotency key — under concurrency, redelivery and a sender dying mid-send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.asgi_server import serve_asgi
from tests.fakes.smtp_server import smtp_server
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.workers.conftest import Env
from vsm_mcp.bus.events import Event
from vsm_mcp.workers.notify import ledger
from vsm_mcp.workers.notify.channels import ChannelStore
from vsm_mcp.workers.notify.delivery import Notifier
from vsm_mcp.workers.notify.message import render
from vsm_mcp.workers.notify.outcome import backoff_s
from vsm_mcp.workers.notify.smtp import SmtpSender
from vsm_mcp.workers.notify.telegram import TelegramSender
from vsm_mcp.workers.notify.webhook import WebhookSender, message_id

pytestmark = pytest.mark.anyio
BASE, CAP = 0.05, 1.0


@dataclass
class Rig:
    env: Env
    notifier: Notifier
    telegram: FakeTelegram
    tg_url: str


@asynccontextmanager
async def make_rig(env: Env) -> AsyncIterator[Rig]:
    tg = FakeTelegram()
    async with serve_asgi(tg.app()) as url, httpx.AsyncClient(timeout=5) as client:
        senders: dict[str, Any] = {
            "telegram": TelegramSender(client, url, tg.token),
            "webhook": WebhookSender(client),
        }
        notifier = Notifier(env.db, senders, max_attempts=4, backoff_base_s=BASE, backoff_max_s=CAP)
        yield Rig(env, notifier, tg, url)


@pytest.fixture
async def rig(sqlite_env: Env) -> AsyncIterator[Rig]:
    """Protocol behaviour: SQLite is enough."""
    async with make_rig(sqlite_env) as r:
        yield r


@pytest.fixture
async def rig_both(env: Env) -> AsyncIterator[Rig]:
    """Ledger behaviour: on SQLite and on PostgreSQL (row-level security, real concurrency)."""
    async with make_rig(env) as r:
        yield r


def alert_event(tenant: str, n: int = 0) -> Event:
    return Event(topic=f"alert.{tenant}.error_rate", tenant=tenant, type="alert",
                 data={"kind": "error_rate", "status": "firing", "system": "upstream:echo", "value": 0.5 + n,
                       "threshold": 0.25, "idempotency_key": f"k{n}"})


async def deliver(n: Notifier, tenant: str, key: str, channel_id: str, event: Event) -> list[dict[str, Any]]:
    """What the durable workflow does, with asyncio.sleep: attempt until settled."""
    await ledger.ensure(n.db, tenant, key, channel_id, event.topic, event.id, render(event).to_dict())
    results = []
    while True:
        r = await n.attempt(tenant, key, channel_id, render(event).to_dict())
        results.append(r)
        if r["state"] != "retrying":
            return results
        await asyncio.sleep(r["retry_after_s"])


async def test_telegram_send_once_per_key(rig_both: Rig) -> None:
    a = rig_both.env.a
    ch = await ChannelStore(rig_both.env.db).add(a, "ops", "telegram", {"chat_id": "-100123"}, ["alert.#"])
    ev = alert_event(a)
    first = await deliver(rig_both.notifier, a, "key-1", ch.id, ev)
    again = await deliver(rig_both.notifier, a, "key-1", ch.id, ev)  # a redelivered event, same key
    assert [r["state"] for r in first] == ["sent"] and again[-1]["state"] == "sent"
    assert len(rig_both.telegram.sent) == 1 and len(rig_both.telegram.calls) == 1
    assert rig_both.telegram.sent[0]["chat"]["id"] == -100123
    assert "[FIRING] error_rate on upstream:echo" in rig_both.telegram.sent[0]["text"]
    row = await ledger.get(rig_both.env.db, a, "key-1")
    assert row is not None and row.state == "sent" and row.attempts == 1 and row.remote_id == "1"


async def test_telegram_retries_429_and_5xx_with_backoff(rig: Rig) -> None:
    a = rig.env.a
    ch = await ChannelStore(rig.env.db).add(a, "ops", "telegram", {"chat_id": 7}, ["alert.#"])
    rig.telegram.fail_next = [(429, 0.3), (502, None), (500, None)]
    results = await deliver(rig.notifier, a, "key-2", ch.id, alert_event(a))
    assert [r["state"] for r in results] == ["retrying", "retrying", "retrying", "sent"]
    # Telegram's retry_after wins over a shorter backoff; then doubling from the base.
    assert [r["retry_after_s"] for r in results[:3]] == [0.3, backoff_s(2, BASE, CAP), backoff_s(3, BASE, CAP)]
    assert backoff_s(2, BASE, CAP) == 2 * BASE and backoff_s(3, BASE, CAP) == 4 * BASE
    gaps = [b - a for a, b in zip(rig.telegram.calls, rig.telegram.calls[1:], strict=False)]
    assert all(g >= r["retry_after_s"] for g, r in zip(gaps, results, strict=False))  # waited at least that long
    assert len(rig.telegram.sent) == 1


async def test_gives_up_after_max_attempts_and_4xx_is_final(rig: Rig) -> None:
    a = rig.env.a
    ch = await ChannelStore(rig.env.db).add(a, "ops", "telegram", {"chat_id": 7}, ["alert.#"])
    rig.telegram.fail_next = [(503, None)] * 10
    results = await deliver(rig.notifier, a, "key-3", ch.id, alert_event(a))
    assert [r["state"] for r in results] == ["retrying"] * 3 + ["failed"]
    assert "gave up after 4 attempts" in results[-1]["detail"]
    rig.telegram.fail_next = [(400, None)]
    results = await deliver(rig.notifier, a, "key-4", ch.id, alert_event(a))
    assert [r["state"] for r in results] == ["failed"] and "HTTP 400" in results[0]["detail"]
    assert rig.telegram.sent == []


async def test_concurrent_attempts_for_one_key_send_once(rig_both: Rig) -> None:
    a = rig_both.env.a
    ch = await ChannelStore(rig_both.env.db).add(a, "ops", "telegram", {"chat_id": 7}, ["alert.#"])
    ev = alert_event(a)
    await ledger.ensure(rig_both.env.db, a, "key-5", ch.id, ev.topic, ev.id, render(ev).to_dict())
    msg = render(ev).to_dict()
    results = await asyncio.gather(*(rig_both.notifier.attempt(a, "key-5", ch.id, msg) for _ in range(8)))
    states = sorted(r["state"] for r in results)
    # One wins the claim; the others saw it 'sending' (busy: look again later) or already 'sent'.
    assert len(rig_both.telegram.sent) == 1 and set(states) <= {"sent", "retrying"}
    later = await rig_both.notifier.attempt(a, "key-5", ch.id, msg)
    assert later["state"] == "sent" and len(rig_both.telegram.calls) == 1


async def test_a_sender_dying_mid_send_is_never_sent_again(rig_both: Rig) -> None:
    """The request reached the remote, then the sender died before recording it: a retry must
    not send again — the delivery becomes 'uncertain'."""
    a = rig_both.env.a
    release = asyncio.Event()
    received = asyncio.Event()
    original = rig_both.telegram._method

    async def slow(request: Any) -> Any:
        received.set()
        await release.wait()
        return await original(request)

    rig_both.telegram._method = slow  # type: ignore[method-assign]
    async with serve_asgi(rig_both.telegram.app()) as url, httpx.AsyncClient(timeout=5) as client:
        n = Notifier(rig_both.env.db, {"telegram": TelegramSender(client, url, rig_both.telegram.token)},
                     max_attempts=4, backoff_base_s=BASE, backoff_max_s=CAP, stale_after_s=0.5)
        ch = await ChannelStore(rig_both.env.db).add(a, "ops", "telegram", {"chat_id": 7}, ["alert.#"])
        ev = alert_event(a)
        await ledger.ensure(rig_both.env.db, a, "key-6", ch.id, ev.topic, ev.id, render(ev).to_dict())
        task = asyncio.create_task(n.attempt(a, "key-6", ch.id, render(ev).to_dict()))
        await asyncio.wait_for(received.wait(), 10)
        task.cancel()  # the process dies here: the request left, nothing was recorded
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        # Recovery runs the step again: at first the row looks held by a live sender …
        busy = await n.attempt(a, "key-6", ch.id, render(ev).to_dict())
        assert busy["state"] == "retrying" and 0 < busy["retry_after_s"] <= 0.6
        await asyncio.sleep(busy["retry_after_s"])
        # … once that sender would have timed out, it counts as dead: never sent again.
        again = await n.attempt(a, "key-6", ch.id, render(ev).to_dict())
    assert again["state"] == "uncertain"
    assert len(rig_both.telegram.calls) == 1
    row = await ledger.get(rig_both.env.db, a, "key-6")
    assert row is not None and row.state == "uncertain" and "may have arrived" in row.last_error


async def test_unreachable_remote_is_retried_nothing_was_sent(rig: Rig) -> None:
    a = rig.env.a
    async with httpx.AsyncClient(timeout=2) as client:
        n = Notifier(rig.env.db, {"telegram": TelegramSender(client, "http://127.0.0.1:1", "t")},
                     max_attempts=2, backoff_base_s=BASE, backoff_max_s=CAP)
        ch = await ChannelStore(rig.env.db).add(a, "ops", "telegram", {"chat_id": 7}, ["alert.#"])
        results = await deliver(n, a, "key-7", ch.id, alert_event(a))
    assert [r["state"] for r in results] == ["retrying", "failed"]
    assert "cannot connect" in results[0]["detail"]


async def test_webhook_signed_retried_on_5xx_with_a_stable_id(rig: Rig) -> None:
    a = rig.env.a
    store = ChannelStore(rig.env.db)
    probe = await store.add(a, "probe", "webhook", {"url": "http://127.0.0.1:1/hook"}, ["alert.#"])
    secret = probe.config["secret"]
    assert secret.startswith("whsec_")
    receiver = WebhookReceiver(secret)
    receiver.fail_next = [(500, None), (429, "0.2")]
    async with serve_asgi(receiver.app()) as url:
        ch = await store.add(a, "siem", "webhook", {"url": f"{url}/hook", "secret": secret}, ["alert.#"])
        ev = alert_event(a)
        results = await deliver(rig.notifier, a, "key-8", ch.id, ev)
        again = await deliver(rig.notifier, a, "key-8", ch.id, ev)
    assert [r["state"] for r in results] == ["retrying", "retrying", "sent"]
    assert results[1]["retry_after_s"] == 0.2 and again[-1]["state"] == "sent"
    assert all(r["verified"] for r in receiver.requests) and len(receiver.requests) == 3
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {message_id("key-8")}
    assert list(receiver.accepted) == [message_id("key-8")] and len(receiver.accepted[message_id("key-8")]) == 1
    import json

    body = json.loads(receiver.accepted[message_id("key-8")][0])
    assert body["topic"] == ev.topic and body["id"] == ev.id and body["data"]["value"] == 0.5


async def test_webhook_with_a_wrong_secret_is_rejected_not_retried(rig: Rig) -> None:
    a = rig.env.a
    receiver = WebhookReceiver("whsec_" + "QUJD" * 8)
    async with serve_asgi(receiver.app()) as url:
        ch = await ChannelStore(rig.env.db).add(a, "siem", "webhook", {"url": f"{url}/hook", "secret": "other"}, ["#"])
        results = await deliver(rig.notifier, a, "key-9", ch.id, alert_event(a))
    assert [r["state"] for r in results] == ["failed"] and "HTTP 401" in results[0]["detail"]


async def test_smtp_retries_4xx_and_sends_one_mail_per_key(sqlite_env: Env) -> None:
    env = sqlite_env
    a = env.a
    with smtp_server() as (sink, url):
        sink.fail_next = ["451 4.3.0 Mailbox busy, try later"]
        n = Notifier(env.db, {"smtp": SmtpSender(url, "vsm@example.test", 5)}, max_attempts=4,
                     backoff_base_s=BASE, backoff_max_s=CAP)
        ch = await ChannelStore(env.db).add(a, "mail", "smtp", {"to": ["ops@example.test", "sre@example.test"]}, ["alert.#"])
        ev = alert_event(a)
        results = await deliver(n, a, "key-10", ch.id, ev)
        again = await deliver(n, a, "key-10", ch.id, ev)
        sink.fail_next = ["550 5.1.1 No such user"]
        refused = await deliver(n, a, "key-11", ch.id, alert_event(a, 1))
    assert [r["state"] for r in results] == ["retrying", "sent"] and again[-1]["state"] == "sent"
    assert len(sink.messages) == 1 and sink.data_commands == 3
    mail = sink.messages[0]
    assert mail["Subject"] == "[FIRING] error_rate on upstream:echo"
    assert mail["X-VSM-Idempotency-Key"] == "key-10" and mail["Message-ID"].endswith("@vsm-mcp>")
    assert sink.envelopes[0] == ("vsm@example.test", ["ops@example.test", "sre@example.test"])
    assert [r["state"] for r in refused] == ["failed"] and "550" in refused[0]["detail"]


async def test_removed_channel_is_skipped(rig: Rig) -> None:
    a = rig.env.a
    store = ChannelStore(rig.env.db)
    ch = await store.add(a, "ops", "telegram", {"chat_id": 7}, ["alert.#"])
    await store.set_enabled(a, "ops", False)
    results = await deliver(rig.notifier, a, "key-12", ch.id, alert_event(a))
    assert [r["state"] for r in results] == ["skipped"] and rig.telegram.calls == []
