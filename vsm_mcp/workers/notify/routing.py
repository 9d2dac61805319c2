"""Notification routing: bus events → one durable delivery per matching channel.

Consumes the named bus queue ``VSM_NOTIFY_QUEUE`` (competing workers; on RabbitMQ an event is
acknowledged only when the next is asked for, so a worker dying mid-event gets it redelivered).
For each event it looks up the tenant's enabled channels whose patterns match the topic and
enqueues one delivery per channel with the key ``<channel id>:<event idempotency key>``: the
workflow id is derived from it, so a redelivered event or a re-raised alert starts nothing new.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel import select

from vsm_mcp.bus import Subscription
from vsm_mcp.bus.events import Event
from vsm_mcp.db import Database
from vsm_mcp.models import Tenant
from vsm_mcp.workers.notify.channels import ChannelStore
from vsm_mcp.workers.notify.message import render

log = logging.getLogger(__name__)
Enqueue = Callable[[str, str, str, str, str, dict[str, Any]], Awaitable[str]]
KeyOf = Callable[[str, Event], str]
RETRIES = 5


class NotifyRouter:
    def __init__(self, db: Database, enqueue: Enqueue, key_of: KeyOf) -> None:
        self.db = db
        self.channels = ChannelStore(db)
        self.enqueue = enqueue
        self.key_of = key_of
        self._names: dict[str, str] = {}
        self.routed = 0

    async def _tenant_name(self, tenant_id: str) -> str:
        if tenant_id not in self._names:
            async with self.db.system() as s:
                name = (await s.execute(select(Tenant.name).where(Tenant.id == tenant_id))).scalar_one_or_none()
            self._names[tenant_id] = name or tenant_id
        return self._names[tenant_id]

    async def route(self, event: Event) -> list[str]:
        """Enqueue the deliveries of ``event``; returns their keys."""
        if not event.tenant:
            return []
        channels = await self.channels.matching(event.tenant, event.topic)
        if not channels:
            return []
        message = render(event, await self._tenant_name(event.tenant)).to_dict()
        keys = []
        for ch in channels:
            key = self.key_of(ch.id, event)
            await self.enqueue(event.tenant, key, ch.id, event.topic, event.id, message)
            keys.append(key)
        self.routed += len(keys)
        return keys

    async def run(self, sub: Subscription) -> None:
        """Route every event of ``sub``; a failure (database down) is retried with backoff before
        the event is given up (and logged), so one bad moment does not drop a page."""
        async for event in sub:
            for attempt in range(RETRIES):
                try:
                    await self.route(event)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    if attempt == RETRIES - 1:
                        log.exception("giving up routing event %s (%s)", event.id, event.topic)
                    else:
                        await asyncio.sleep(0.2 * 2**attempt)
