"""One delivery attempt: claim the ledger row, send through the channel's sender, record.

``Notifier.attempt`` is the body of one durable step (``jobs.delivery_attempt`` wraps it);
the workflow around it sleeps ``retry_after_s`` between attempts. It returns a plain dict so
DBOS can record it:

    {"state": "sent" | "retrying" | "failed" | "uncertain" | "skipped", "detail": str,
     "retry_after_s": float, "attempts": int}
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from vsm_mcp.db import Database
from vsm_mcp.workers.notify import ledger
from vsm_mcp.workers.notify.channels import ChannelStore
from vsm_mcp.workers.notify.message import Message
from vsm_mcp.workers.notify.outcome import MaybeDelivered, Rejected, RetryLater, backoff_s

log = logging.getLogger(__name__)


class Sender(Protocol):
    kind: str

    async def send(self, config: dict[str, Any], message: Message, key: str) -> str: ...


class Notifier:
    """Senders by kind plus the retry policy."""

    def __init__(
        self, db: Database, senders: dict[str, Sender], *, max_attempts: int, backoff_base_s: float,
        backoff_max_s: float, stale_after_s: float = 60.0,
    ) -> None:
        self.db = db
        self.channels = ChannelStore(db)
        self.senders = senders
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stale_after_s = stale_after_s  # a "sending" row older than this lost its sender

    async def attempt(self, tenant_id: str, key: str, channel_id: str, message: dict[str, Any]) -> dict[str, Any]:
        claim = await ledger.claim(self.db, tenant_id, key, self.stale_after_s)
        if claim.state == "busy":  # another sender holds it: look again once it would count as dead
            return {"state": "retrying", "detail": "another sender holds it", "retry_after_s": claim.wait_s + 0.01,
                    "attempts": claim.attempts}
        if not claim.won:
            return {"state": claim.state, "detail": "already settled", "retry_after_s": 0.0, "attempts": claim.attempts}
        state, detail, after, remote = await self._send(tenant_id, channel_id, Message.from_dict(message), key, claim.attempts)
        await ledger.record(self.db, tenant_id, key, state, error=detail, remote_id=remote)
        if state != "sent":
            log.warning("notification %s for tenant %s: %s (%s)", key, tenant_id, state, detail)
        return {"state": state, "detail": detail, "retry_after_s": after, "attempts": claim.attempts}

    async def _send(
        self, tenant_id: str, channel_id: str, message: Message, key: str, attempt: int
    ) -> tuple[str, str, float, str]:
        channel = await self.channels.get(tenant_id, channel_id)
        if channel is None or not channel.enabled:
            return "skipped", "the channel was removed or disabled", 0.0, ""
        sender = self.senders.get(channel.kind)
        if sender is None:
            return "failed", f"no sender for channel kind {channel.kind!r} in this process", 0.0, ""
        try:
            remote = await sender.send(dict(channel.config), message, key)
        except RetryLater as exc:
            if attempt >= self.max_attempts:
                return "failed", f"gave up after {attempt} attempts: {exc.detail}", 0.0, ""
            return "retrying", exc.detail, backoff_s(attempt, self.backoff_base_s, self.backoff_max_s, exc.after_s), ""
        except Rejected as exc:
            return "failed", exc.detail, 0.0, ""
        except MaybeDelivered as exc:
            return "uncertain", exc.detail, 0.0, ""
        return "sent", "", 0.0, remote
