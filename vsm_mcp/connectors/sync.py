"""A connector sync: a durable workflow (DBOS) with one step per page.

``run_sync`` is the workflow body: ``page`` steps until the connector says done, then
``finish``. Each page step is the unit of progress and of recovery:

1. read the saved cursor (the database is the authority, not the workflow's memory);
2. fetch one page from the source (``Connector.page``; 429/5xx ridden out in ``http``);
3. apply it through the content layer's tools, as the principal that started the sync:
   ``content__ingest_item`` for each new or edited item (idempotent by content hash),
   ``content__container_delete`` for each deleted one; mark swept ids as still present;
4. only then save the cursor the page ends at, with the page's counts.

A crash anywhere in 1-3 leaves the old cursor: the resumed workflow re-runs that page, which
re-ingests nothing that is already there (no duplicate) and skips nothing (no loss). A refused
credential (401/403) or a source error ends the sync with ``last_error`` set to one line naming
the connector — the cursor is untouched, so the next sync starts where this one stood.

Sweeps (sources with no deletion feed): the first page that lists present ids stamps the
envelope with a ``mark`` (the sync number then); every item seen since has ``seen >= mark``;
at ``sweep_end`` the items below the mark are deleted. The mark lives in the saved cursor, so a
sweep continued by a later sync (after a 401, say) keeps the items the earlier part saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from dbos import DBOS

from vsm_mcp import durable
from vsm_mcp.auth import Principal
from vsm_mcp.connectors import store
from vsm_mcp.connectors.base import Change, Connector, Page, Source
from vsm_mcp.connectors.credentials import resolve
from vsm_mcp.connectors.http import ConnectorError, GuardedHttp, RetryPolicy
from vsm_mcp.connectors.tables import ConnectorItem
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import ConfigError, NotFound, VsmError
from vsm_mcp.models import utcnow

log = logging.getLogger("vsm_mcp.connectors")
QUEUE = "connectors"
ENGINE_WAIT_S = 60.0
durable.declare_queue(QUEUE, worker_concurrency=4)

TYPES: dict[str, Connector] = {}


def register(connector: Connector) -> None:
    TYPES[connector.type] = connector


class SyncEngine:
    """One per process: the guarded HTTP client and the server context the steps use."""

    def __init__(self, ctx: ServerContext) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.http = GuardedHttp(
            list(s.fetch_allow), timeout_s=s.fetch_timeout_s, max_bytes=s.fetch_max_bytes,
            retry=RetryPolicy(s.connector_max_retries, s.connector_backoff_s, s.connector_max_wait_s),
        )
        self.tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def aclose(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.http.aclose()


_engine: SyncEngine | None = None
EXTRAS_KEY = "connectors"


def engine_of(ctx: ServerContext) -> SyncEngine:
    """The process's engine (shared by the cms and drive servers), attached for durable steps."""
    global _engine
    engine = ctx.extras.get(EXTRAS_KEY)
    if engine is None:
        engine = ctx.extras[EXTRAS_KEY] = SyncEngine(ctx)
    assert isinstance(engine, SyncEngine)
    _engine = engine
    return engine


async def current_engine() -> SyncEngine:
    deadline = time.monotonic() + ENGINE_WAIT_S
    while _engine is None:  # a workflow recovered at launch may run before the server is built
        if time.monotonic() > deadline:
            raise ConfigError("no connector engine in this process (neither cms nor drive is mounted)")
        await asyncio.sleep(0.05)
    return _engine


def _principal(spec: dict[str, Any]) -> Principal:
    return Principal(spec["tenant"], frozenset(spec.get("scopes") or []), spec.get("key", ""))


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def _call(engine: SyncEngine, spec: dict[str, Any], tool: str, args: dict[str, Any]) -> dict[str, Any]:
    res = await engine.ctx.tools.call(_principal(spec), tool, args, source="connector")
    if res.is_error:
        text = _text(res)
        if "not_found" in text:
            raise NotFound(text)
        raise ConnectorError(f"connector {spec['name']!r}: {tool} failed: {text}")
    return dict(res.structured_content or {})


async def _delete(engine: SyncEngine, spec: dict[str, Any], items: list[ConnectorItem]) -> int:
    done = 0
    for it in items:
        if it.container_id:
            try:
                await _call(engine, spec, "content__container_delete", {"container_id": it.container_id})
            except NotFound:
                pass  # deleted before a crash, or by hand: the item row goes all the same
        done += 1
    await store.drop_items(engine.ctx.db, spec["tenant"], spec["name"], [it.external_id for it in items])
    return done


async def _ingest(engine: SyncEngine, spec: dict[str, Any], changes: list[Change], cursor: dict[str, Any],
                  typ: str) -> dict[str, int]:
    """One page's items in one ``content__ingest_items`` call, then their item rows in one transaction."""
    counts = {"created": 0, "unchanged": 0, "failed": 0}
    if not changes:
        return counts
    mark = json.dumps(cursor, sort_keys=True)[:1000]
    by_source = {f"{spec['name']}:{ch.external_id}": ch for ch in changes}
    out = await _call(engine, spec, "content__ingest_items", {"job": f"connector-{spec['name']}", "items": [{
        "source": src, "text": ch.text, "content_type": ch.content_type, "title": ch.title[:500],
        "lineage": {"connector": spec["name"], "type": typ, "external_id": ch.external_id, "url": ch.url,
                    "modified": ch.modified, "cursor": mark, "sync": spec["sync"]},
        "meta": {"connector": spec["name"], "type": typ, "url": ch.url, "modified": ch.modified, **ch.meta},
    } for src, ch in by_source.items()]})
    rows = []
    for r in out.get("results", []):
        ch = by_source.get(str(r.get("source")))
        if ch is None:
            continue
        if r.get("status") != "ok":
            counts["failed"] += 1
            continue
        counts["created" if r.get("created") else "unchanged"] += 1
        rows.append(ConnectorItem(
            tenant_id=spec["tenant"], connector=spec["name"], external_id=ch.external_id,
            container_id=str(r["container_id"]), seen=int(spec["sync"]), modified=ch.modified[:64], title=ch.title[:500],
        ))
    await store.put_items(engine.ctx.db, spec["tenant"], rows)
    return counts


async def page_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Fetch, apply and commit one page (see the module docstring)."""
    engine = await current_engine()
    db, tenant, name = engine.ctx.db, spec["tenant"], spec["name"]
    row = await store.get(db, tenant, name)
    connector = TYPES[row.type]
    envelope = dict(row.cursor or {})
    try:
        source = Source(name, row.type, row.base_url, resolve(name, row.credentials), dict(row.options),
                        engine.ctx.settings.connector_page_size)
        page: Page = await connector.page(engine.http, source, envelope.get("c"))
    except VsmError as exc:  # 401, a source error, a missing variable: one line, cursor unchanged
        return {"done": True, "error": exc.message}  # finish records it (state stays running until then)
    counts = {"created": 0, "unchanged": 0, "deleted": 0, "failed": 0, "pages": 1}
    gone = [c.external_id for c in page.changes if c.deleted]
    if gone:
        known = await store.items(db, tenant, name, gone)
        counts["deleted"] += await _delete(engine, spec, list(known.values()))
    live = [c for c in page.changes if not c.deleted]
    for key, value in (await _ingest(engine, spec, live, page.cursor, row.type)).items():
        counts[key] += value
    if page.present is not None:
        envelope.setdefault("mark", int(spec["sync"]))
        await store.mark_seen(db, tenant, name, page.present, int(spec["sync"]))
    if page.sweep_end:
        mark = int(envelope.pop("mark", spec["sync"]))
        counts["deleted"] += await _delete(engine, spec, await store.unseen(db, tenant, name, mark))
    envelope["c"] = page.cursor
    await store.save_page(db, tenant, name, envelope, counts)  # the cursor goes in only now
    return {"done": page.done, "counts": counts}


async def finish_step(spec: dict[str, Any], error: str | None) -> None:
    engine = await current_engine()
    fields: dict[str, Any] = {"state": "failed" if error else "idle", "last_sync_at": utcnow()}
    if error:
        fields["last_error"] = error[:2000]
    else:
        fields["last_error"] = ""
    await store.update(engine.ctx.db, spec["tenant"], spec["name"], **fields)


async def run_sync(spec: dict[str, Any], page: Any, finish: Any) -> dict[str, Any]:
    """The workflow body: pages until done, then finish (deterministic given the steps' outputs)."""
    totals = {"created": 0, "unchanged": 0, "deleted": 0, "failed": 0, "pages": 0}
    error: str | None = None
    try:
        while True:
            res = await page(spec)
            for key, value in (res.get("counts") or {}).items():
                totals[key] += value
            if res.get("error"):
                error = str(res["error"])
                break
            if res["done"]:
                break
    except Exception as exc:  # a step that kept failing: recorded, not swallowed silently
        error = f"connector {spec['name']!r}: sync failed: {exc}"
    await finish(spec, error)
    return {**totals, "error": error, "sync": spec["sync"]}


@DBOS.step(retries_allowed=True, interval_seconds=0.5, max_attempts=3)
async def _page_durable(spec: dict[str, Any]) -> dict[str, Any]:
    return await page_step(spec)


@DBOS.step(retries_allowed=True, interval_seconds=0.5, max_attempts=3)
async def _finish_durable(spec: dict[str, Any], error: str | None) -> None:
    await finish_step(spec, error)


@DBOS.workflow()
async def connector_sync_workflow(spec: dict[str, Any]) -> dict[str, Any]:
    return await run_sync(spec, _page_durable, _finish_durable)


def workflow_id(spec: dict[str, Any]) -> str:
    return f"connsync-{spec['tenant']}-{spec['name']}-{spec['sync']}"


async def start(engine: SyncEngine, principal: Principal, name: str, full: bool) -> dict[str, Any]:
    """Start a sync of ``name`` (one at a time per connector); returns its sync number."""
    db, tenant = engine.ctx.db, principal.tenant_id
    row = await store.get(db, tenant, name)
    wid = f"connsync-{tenant}-{name}-{row.syncs}"
    alive = durable.is_running() or (wid in engine.tasks and not engine.tasks[wid].done())
    if row.state == "running" and alive:  # a durable sync that died is resumed by DBOS, not restarted
        return {"connector": name, "sync": row.syncs, "state": "running", "started": False}
    n = row.syncs + 1
    fields: dict[str, Any] = {"syncs": n, "state": "running", "counts": {}}
    if full:
        fields["cursor"] = None
    await store.update(db, tenant, name, **fields)
    spec = {"tenant": tenant, "scopes": sorted(principal.scopes), "key": principal.key_id, "name": name,
            "sync": n, "full": full, "id": uuid.uuid4().hex[:8]}
    if durable.is_running():
        from dbos import SetWorkflowID

        with SetWorkflowID(workflow_id(spec)):
            await durable.queue(QUEUE).enqueue_async(connector_sync_workflow, spec)
    else:  # a server run alone: the same body as a plain task (not durable)
        engine.tasks[workflow_id(spec)] = asyncio.create_task(
            run_sync(spec, page_step, finish_step), name=workflow_id(spec))
    return {"connector": name, "sync": n, "state": "running", "started": True, "full": full}


async def wait(engine: SyncEngine, tenant: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = await store.get(engine.ctx.db, tenant, name)
        if row.state != "running" or time.monotonic() > deadline:
            return status_dict(row)
        await asyncio.sleep(0.05)


def status_dict(row: Any) -> dict[str, Any]:
    return {
        "connector": row.name, "type": row.type, "base_url": row.base_url, "state": row.state,
        "credentials": dict(row.credentials), "options": dict(row.options),
        "cursor": (row.cursor or {}).get("c"), "syncs": row.syncs, "counts": dict(row.counts),
        "last_sync_at": row.last_sync_at.isoformat() if row.last_sync_at else None,
        "last_error": row.last_error or None,
    }
