"""End to end through `vsm-mcp serve`'s app: the router runs the workers in-process. A tenant
policy denies a call made by a real MCP client; the router's tool.failed event reaches the policy
evaluator, its policy.violation reaches the notifier, and one durable delivery reaches a local
Telegram Bot API — and the episodes of those calls are what the analyzer rolls up."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from mcp import Client
from mcp.shared.exceptions import MCPError

from router.app import create_app
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest
from tests.asgi_server import serve_asgi
from tests.fakes.telegram_api import FakeTelegram
from tests.gate_helpers import admin_key, keyed_mcp
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.workers.alerts import Thresholds
from vsm_mcp.workers.analyzer import analyze_tenant
from vsm_mcp.workers.notify.channels import ChannelStore

pytestmark = pytest.mark.anyio
NO_DELETE = 'default allow\ndeny no_delete "deletes are off" when tool.name == "storage_delete"\n'


def manifest(tmp_path: Path) -> Path:
    entries = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"]
               if u["name"] in ("storage", "policy")]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"upstreams": entries}))
    return path


async def test_denied_call_to_violation_to_telegram(tmp_path: Path) -> None:
    tg = FakeTelegram()
    async with serve_asgi(tg.app()) as tg_url:
        path = manifest(tmp_path)
        settings = load_settings(home=tmp_path / ".vsm", manifests=[str(path)], storage_sweep_interval_s=0,
                                 telegram_api_base=tg_url, telegram_bot_token=tg.token)
        await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
        ctx = ServerContext.create(settings)
        tenant = await ctx.default_tenant_id()
        await ChannelStore(ctx.db).add(tenant, "security", "telegram", {"chat_id": 7}, ["policy.violation"])
        specs = parse_manifest(yaml.safe_load(path.read_text()), "m.yaml")
        started = datetime.now(UTC)
        key = await admin_key(ctx.db)  # bucket_create and policy_put are admin work
        async with serve_asgi(create_app(settings, ctx, specs=specs)) as url:
            async with Client(keyed_mcp(f"{url}/mcp", key), mode="legacy") as client:
                for tool, args in [("storage__bucket_create", {"name": "docs"}),
                                   ("storage__storage_put", {"bucket": "docs", "key": "a", "text": "a"}),
                                   ("policy__policy_put", {"name": "nodelete", "source": NO_DELETE})]:
                    assert not (await client.call_tool(tool, args)).is_error
                with pytest.raises(MCPError) as denied:
                    await client.call_tool("storage__storage_delete", {"bucket": "docs", "key": "a"})
                assert denied.value.data["rule"] == "no_delete"
            for _ in range(400):
                if tg.sent:
                    break
                await asyncio.sleep(0.05)
            assert len(tg.sent) == 1, "the violation never reached Telegram"
            text = tg.sent[0]["text"]
            assert text.startswith("[POLICY] nodelete/no_delete on storage_delete") and "tenant: default" in text
        # The episodes the router wrote are what the analyzer rolls up.
        result = await analyze_tenant(ctx.db, None, tenant, started - timedelta(seconds=1),
                                      datetime.now(UTC) + timedelta(seconds=1), Thresholds())
        async with ctx.db.tenant(tenant) as s:
            from sqlmodel import select

            from vsm_mcp.models import SystemState

            rows = {r.system: r.state for r in (await s.execute(select(SystemState))).scalars()}
        await ctx.aclose()
    assert result.episodes >= 4
    storage = rows["upstream:storage"]
    assert storage["errors"].get("policy_denied") == 1 and storage["calls"] >= 3
    assert json.dumps(rows["tool:storage:storage_delete"]["errors"]) == '{"policy_denied": 1}'
