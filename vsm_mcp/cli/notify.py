"""``vsm-mcp notify …`` — a tenant's notification channels and the delivery ledger.

    vsm-mcp notify add ops --tenant acme --telegram -100123 --topics 'alert.#'
    vsm-mcp notify add siem --tenant acme --webhook https://siem.example/hook --topics 'alert.#,policy.violation'
    vsm-mcp notify add oncall --tenant acme --email ops@example.com --topics 'alert.*.flapping'
    vsm-mcp notify list --tenant acme
    vsm-mcp notify test ops --tenant acme
    vsm-mcp notify deliveries --tenant acme --state uncertain
    vsm-mcp notify resend <key> --tenant acme
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from vsm_mcp.cli.common import DbUrl, ensure_schema, handle_errors, out, run_async, settings_from
from vsm_mcp.errors import InvalidArguments

T = TypeVar("T")
notify_app = typer.Typer(
    help="Notification channels per tenant (Telegram, signed webhooks, e-mail) and their deliveries.",
    no_args_is_help=True,
)
TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant name.")]


def _with_db(database_url: str | None, fn: Callable[[Any, Any, str], Awaitable[T]], tenant: str) -> T:
    """Run ``fn(settings, db, tenant_id)`` against the database."""
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import get_tenant

    settings = settings_from(database_url)
    ensure_schema(settings)  # a fresh SQLite home is migrated; an empty PostgreSQL says to migrate

    async def go() -> T:
        db = Database(settings, settings.migration_database_url)
        try:
            tenant_id = (await get_tenant(db, tenant)).id
            return await fn(settings, db, tenant_id)
        finally:
            await db.aclose()

    return run_async(go())


@notify_app.command("add")
@handle_errors
def add(
    name: Annotated[str, typer.Argument(help="Channel name, unique in the tenant.")],
    tenant: TenantOpt,
    topics: Annotated[str, typer.Option("--topics", help="Comma-separated bus patterns, e.g. 'alert.#,policy.violation'.")],
    telegram: Annotated[str | None, typer.Option("--telegram", help="Telegram chat id (or @channel).")] = None,
    webhook: Annotated[str | None, typer.Option("--webhook", help="Webhook URL (signed, Standard Webhooks).")] = None,
    secret: Annotated[str | None, typer.Option("--secret", help="Webhook signing secret (default: generated, shown once).")] = None,
    email: Annotated[str | None, typer.Option("--email", help="Comma-separated e-mail addresses (server: VSM_SMTP_URL).")] = None,
    database_url: DbUrl = None,
) -> None:
    """Add a channel: exactly one of --telegram, --webhook, --email."""
    from vsm_mcp.workers.notify.channels import ChannelStore, public

    given = [k for k, v in (("telegram", telegram), ("webhook", webhook), ("smtp", email)) if v]
    if len(given) != 1:
        raise InvalidArguments("give exactly one of --telegram CHAT, --webhook URL or --email ADDRESSES")
    kind = given[0]
    config: dict[str, Any] = (
        {"chat_id": telegram} if kind == "telegram"
        else {"url": webhook, **({"secret": secret} if secret else {})} if kind == "webhook"
        else {"to": [a.strip() for a in (email or "").split(",") if a.strip()]}
    )
    patterns = [p.strip() for p in topics.split(",") if p.strip()]

    async def go(_s: Any, db: Any, tenant_id: str) -> dict[str, Any]:
        return public(await ChannelStore(db).add(tenant_id, name, kind, config, patterns), reveal=True)

    shown = _with_db(database_url, go, tenant)
    out.print_json(json.dumps(shown))


@notify_app.command("list")
@handle_errors
def list_channels(tenant: TenantOpt, database_url: DbUrl = None) -> None:
    """List the tenant's channels (secrets masked)."""
    from vsm_mcp.workers.notify.channels import ChannelStore, public

    async def go(_s: Any, db: Any, tenant_id: str) -> list[dict[str, Any]]:
        return [public(c) for c in await ChannelStore(db).all(tenant_id)]

    table = Table("name", "kind", "topics", "enabled", "config")
    for c in _with_db(database_url, go, tenant):
        table.add_row(c["name"], c["kind"], ",".join(c["topics"]), "yes" if c["enabled"] else "no", json.dumps(c["config"]))
    out.print(table)


@notify_app.command("remove")
@handle_errors
def remove(name: str, tenant: TenantOpt, database_url: DbUrl = None) -> None:
    """Remove a channel (deliveries already queued for it are skipped)."""
    from vsm_mcp.workers.notify.channels import ChannelStore

    async def go(_s: Any, db: Any, tenant_id: str) -> None:
        await ChannelStore(db).remove(tenant_id, name)

    _with_db(database_url, go, tenant)
    out.print(f"removed channel {name}")


@notify_app.command("enable")
@handle_errors
def enable(name: str, tenant: TenantOpt, off: Annotated[bool, typer.Option("--off", help="Disable instead.")] = False,
           database_url: DbUrl = None) -> None:
    """Enable (or with --off, disable) a channel."""
    from vsm_mcp.workers.notify.channels import ChannelStore

    async def go(_s: Any, db: Any, tenant_id: str) -> None:
        await ChannelStore(db).set_enabled(tenant_id, name, not off)

    _with_db(database_url, go, tenant)
    out.print(f"channel {name} {'disabled' if off else 'enabled'}")


async def _send_now(settings: Any, db: Any, tenant_id: str, key: str, channel_id: str, message: dict[str, Any]) -> dict[str, Any]:
    """Attempt until settled, in this process (no spine needed: for tests and resends)."""
    import asyncio

    import httpx

    from vsm_mcp.workers.notify.delivery import Notifier
    from vsm_mcp.workers.notify.smtp import SmtpSender
    from vsm_mcp.workers.notify.telegram import TelegramSender
    from vsm_mcp.workers.notify.webhook import WebhookSender

    async with httpx.AsyncClient(timeout=settings.notify_timeout_s) as client:
        n = Notifier(db, {
            "telegram": TelegramSender(client, settings.telegram_api_base, settings.telegram_bot_token),
            "webhook": WebhookSender(client),
            "smtp": SmtpSender(settings.smtp_url, settings.smtp_from, settings.notify_timeout_s),
        }, max_attempts=min(3, settings.notify_max_attempts), backoff_base_s=settings.notify_backoff_s,
            backoff_max_s=min(10.0, settings.notify_backoff_max_s), stale_after_s=2 * settings.notify_timeout_s + 5)
        while True:
            r = await n.attempt(tenant_id, key, channel_id, message)
            if r["state"] != "retrying":
                return r
            await asyncio.sleep(r["retry_after_s"])


@notify_app.command("test")
@handle_errors
def test(name: str, tenant: TenantOpt, database_url: DbUrl = None) -> None:
    """Send a test message to a channel now and print how it went."""
    from vsm_mcp.bus.events import Event
    from vsm_mcp.workers.notify import ledger
    from vsm_mcp.workers.notify.channels import ChannelStore
    from vsm_mcp.workers.notify.message import render

    async def go(settings: Any, db: Any, tenant_id: str) -> dict[str, Any]:
        channel = next((c for c in await ChannelStore(db).all(tenant_id) if c.name == name), None)
        if channel is None:
            raise InvalidArguments(f"no notification channel {name!r} for tenant {tenant!r}")
        event = Event(topic="notify.test", tenant=tenant_id, type="test", data={"reason": f"test of channel {name}"})
        key = f"{channel.id}:test:{event.id}"
        message = render(event, tenant).to_dict()
        await ledger.ensure(db, tenant_id, key, channel.id, event.topic, event.id, message)
        return await _send_now(settings, db, tenant_id, key, channel.id, message)

    result = _with_db(database_url, go, tenant)
    out.print(f"{result['state']}{': ' + result['detail'] if result['detail'] else ''}")
    if result["state"] != "sent":
        raise typer.Exit(1)


@notify_app.command("deliveries")
@handle_errors
def deliveries(
    tenant: TenantOpt,
    state: Annotated[str | None, typer.Option("--state", help="Only this state (sent, retrying, failed, uncertain …).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most rows shown, newest first.")] = 50,
    database_url: DbUrl = None,
) -> None:
    """The delivery ledger: one row per (channel, event) key."""
    from sqlmodel import col, select

    from vsm_mcp.workers.notify.tables import NotificationDelivery as D

    async def go(_s: Any, db: Any, tenant_id: str) -> list[D]:
        q = select(D).order_by(col(D.created_at).desc()).limit(limit)
        if state:
            q = q.where(D.state == state)
        async with db.tenant(tenant_id) as s:
            return list((await s.execute(q)).scalars())

    table = Table("created", "state", "attempts", "topic", "key", "error")
    for r in _with_db(database_url, go, tenant):
        table.add_row(r.created_at.isoformat(timespec="seconds"), r.state, str(r.attempts), r.topic, r.key, r.last_error[:80])
    out.print(table)


@notify_app.command("resend")
@handle_errors
def resend(key: str, tenant: TenantOpt, database_url: DbUrl = None) -> None:
    """Send an 'uncertain' or 'failed' delivery again, now (an operator's decision: it may arrive twice)."""
    from sqlmodel import col, select, update

    from vsm_mcp.errors import Conflict, NotFound
    from vsm_mcp.models import utcnow
    from vsm_mcp.workers.notify.tables import NotificationDelivery as D

    async def go(settings: Any, db: Any, tenant_id: str) -> dict[str, Any]:
        async with db.tenant(tenant_id) as s:
            row = (await s.execute(select(D).where(D.key == key))).scalars().first()
            if row is None:
                raise NotFound(f"no delivery with key {key!r} for tenant {tenant!r}")
            if row.state not in ("uncertain", "failed"):
                raise Conflict(f"delivery {key!r} is {row.state}; only uncertain or failed ones are resent")
            await s.execute(update(D).where(col(D.key) == key).values(state="retrying", attempts=0, updated_at=utcnow()))
            channel_id, message = row.channel_id, dict(row.message)
        return await _send_now(settings, db, tenant_id, key, channel_id, message)

    result = _with_db(database_url, go, tenant)
    out.print(f"{result['state']}{': ' + result['detail'] if result['detail'] else ''}")
