"""Property: whatever the remote answers and wherever the sender dies, one idempotency key is
accepted by the remote at most once, and the ledger says 'sent' exactly when it was."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.workers.conftest import Env
from vsm_mcp.workers.notify import ledger
from vsm_mcp.workers.notify.channels import ChannelStore
from vsm_mcp.workers.notify.delivery import Notifier
from vsm_mcp.workers.notify.message import Message
from vsm_mcp.workers.notify.outcome import MaybeDelivered, Rejected, RetryLater

pytestmark = pytest.mark.anyio
BEHAVIOURS = ["ok", "429", "5xx", "refused", "no_route", "timeout_after_send", "die_before_send", "die_after_send"]


class Died(BaseException):
    """The process stops here: nothing after this line runs (not an Exception: nothing catches it)."""


class ScriptedRemote:
    """Stands in for Telegram/SMTP/webhook: answers per a script; counts what it accepted."""

    kind = "script"

    def __init__(self) -> None:
        self.script: list[str] = []
        self.accepted: dict[str, int] = {}

    async def send(self, config: dict[str, Any], message: Message, key: str) -> str:
        step = self.script.pop(0) if self.script else "ok"
        if step == "die_before_send":
            raise Died
        if step in ("ok", "timeout_after_send", "die_after_send"):
            self.accepted[key] = self.accepted.get(key, 0) + 1  # it arrived
        if step == "429":
            raise RetryLater("429", 0.0)
        if step == "5xx":
            raise RetryLater("503")
        if step == "refused":
            raise Rejected("400")
        if step == "no_route":
            raise RetryLater("cannot connect")
        if step == "timeout_after_send":
            raise MaybeDelivered("read timeout")
        if step == "die_after_send":
            raise Died
        return "remote-1"


_keys = itertools.count()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(script=st.lists(st.sampled_from(BEHAVIOURS), max_size=8))
async def test_one_key_is_accepted_at_most_once(sqlite_env: Env, script: list[str]) -> None:
    env = sqlite_env
    remote = ScriptedRemote()
    n = Notifier(env.db, {"script": remote}, max_attempts=5, backoff_base_s=0.0, backoff_max_s=0.0,
                 stale_after_s=0.0)  # a 'sending' row is stale at once: recovery is immediate here
    channel = await ChannelStore(env.db).add(env.a, f"c{next(_keys)}", "telegram", {"chat_id": 1}, ["#"])
    channel.kind = "script"
    n.channels.get = _fixed(channel)  # type: ignore[method-assign]
    key = f"k{next(_keys)}"
    msg = {"subject": "s", "text": "t", "payload": {}}
    await ledger.ensure(env.db, env.a, key, channel.id, "alert.x", "e", msg)
    remote.script = list(script)
    final = None
    for _ in range(20):  # the workflow's loop, restarted after every death
        try:
            r = await n.attempt(env.a, key, channel.id, msg)
        except Died:
            continue
        if r["state"] != "retrying":
            final = r["state"]
            break
    row = await ledger.get(env.db, env.a, key)
    assert row is not None and final == row.state
    accepted = remote.accepted.get(key, 0)
    assert accepted <= 1  # never twice
    if row.state == "sent":
        assert accepted == 1  # 'sent' is never a lie
    if accepted == 1:
        assert row.state in ("sent", "uncertain")  # what arrived is never retried into a second copy


def _fixed(channel: Any) -> Any:
    async def get(tenant_id: str, channel_id: str) -> Any:
        return channel

    return get
