"""Per-tenant notification channels: where events go and which topics each receives.

A channel is ``(name, kind, config, topics)``; ``topics`` are bus patterns (``alert.#``,
``alert.*.error_rate``, ``policy.violation``) matched against the event's topic. Kinds and
their config:

* ``telegram`` — ``{"chat_id": 123 | "@channel", "bot_token"?: "..."}`` (token defaults to
  ``VSM_TELEGRAM_BOT_TOKEN``)
* ``webhook``  — ``{"url": "https://...", "secret"?: "whsec_..."}`` (a secret is generated when
  absent and shown once, at creation)
* ``smtp``     — ``{"to": ["ops@example.com", ...]}`` (server: ``VSM_SMTP_URL``)
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select

from vsm_mcp.bus import check_patterns, topic_matches
from vsm_mcp.db import Database
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound
from vsm_mcp.workers.notify.tables import NotificationChannel
from vsm_mcp.workers.notify.webhook import new_secret

KINDS = ("telegram", "webhook", "smtp")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
EMAIL_RE = re.compile(r"^[^@\s,]+@[^@\s,]+$")


def check_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """A channel's config, validated and normalised; the first problem raises naming the field."""
    if kind not in KINDS:
        raise InvalidArguments(f"channel kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    allowed = {"telegram": {"chat_id", "bot_token"}, "webhook": {"url", "secret"}, "smtp": {"to"}}[kind]
    extra = sorted(set(config) - allowed)
    if extra:
        raise InvalidArguments(f"{kind} channel: unknown setting {extra[0]!r}; expected {', '.join(sorted(allowed))}")
    out = dict(config)
    if kind == "telegram":
        chat = config.get("chat_id")
        if isinstance(chat, str) and re.fullmatch(r"-?\d+", chat):
            out["chat_id"] = int(chat)
        elif not (isinstance(chat, int) and not isinstance(chat, bool)) and not (
            isinstance(chat, str) and chat.startswith("@") and len(chat) > 1
        ):
            raise InvalidArguments("telegram channel: chat_id must be a chat number or '@channelname'")
    elif kind == "webhook":
        url = str(config.get("url") or "")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArguments(f"webhook channel: url must be http(s)://host/..., got {url!r}")
        out["secret"] = str(config.get("secret") or new_secret())
    else:
        to = config.get("to")
        to = [to] if isinstance(to, str) else to
        if not isinstance(to, list) or not to or not all(isinstance(a, str) and EMAIL_RE.match(a) for a in to):
            raise InvalidArguments("smtp channel: to must be a non-empty list of e-mail addresses")
        out["to"] = to
    return out


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidArguments(
            f"channel name {name!r} is invalid: 1-64 letters, digits, '_', '.', '-', starting alphanumeric"
        )
    return name


def public(channel: NotificationChannel, *, reveal: bool = False) -> dict[str, Any]:
    """A channel as shown to an operator; secrets masked unless ``reveal`` (at creation)."""
    config = dict(channel.config)
    for secret in ("secret", "bot_token"):
        if secret in config and not reveal:
            config[secret] = "***"
    return {"name": channel.name, "kind": channel.kind, "config": config, "topics": list(channel.topics),
            "enabled": channel.enabled}


class ChannelStore:
    """CRUD over ``notification_channels``; every method is tenant-scoped."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self, tenant_id: str, name: str, kind: str, config: dict[str, Any], topics: list[str]
    ) -> NotificationChannel:
        row = NotificationChannel(
            tenant_id=tenant_id, name=check_name(name), kind=kind, config=check_config(kind, config),
            topics=list(check_patterns(topics)),
        )
        try:
            async with self.db.tenant(tenant_id) as s:
                s.add(row)
        except IntegrityError:
            raise Conflict(f"a channel named {name!r} already exists for this tenant") from None
        return row

    async def all(self, tenant_id: str) -> list[NotificationChannel]:
        async with self.db.tenant(tenant_id) as s:
            return list((await s.execute(select(NotificationChannel).order_by(col(NotificationChannel.name)))).scalars())

    async def get(self, tenant_id: str, channel_id: str) -> NotificationChannel | None:
        async with self.db.tenant(tenant_id) as s:
            q = select(NotificationChannel).where(NotificationChannel.id == channel_id)
            return (await s.execute(q)).scalars().first()

    async def set_enabled(self, tenant_id: str, name: str, enabled: bool) -> NotificationChannel:
        async with self.db.tenant(tenant_id) as s:
            row = (await s.execute(select(NotificationChannel).where(NotificationChannel.name == name))).scalars().first()
            if row is None:
                raise NotFound(f"no notification channel {name!r} for this tenant")
            row.enabled = enabled
        return row

    async def remove(self, tenant_id: str, name: str) -> None:
        async with self.db.tenant(tenant_id) as s:
            result = await s.execute(delete(NotificationChannel).where(col(NotificationChannel.name) == name))
            if not getattr(result, "rowcount", 0):
                raise NotFound(f"no notification channel {name!r} for this tenant")

    async def matching(self, tenant_id: str, topic: str) -> list[NotificationChannel]:
        """Enabled channels of the tenant with a pattern matching ``topic``."""
        return [
            c for c in await self.all(tenant_id)
            if c.enabled and any(topic_matches(p, topic) for p in c.topics)
        ]
