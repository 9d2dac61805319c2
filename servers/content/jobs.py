"""Ingest jobs: one durable workflow per job, two coarse steps per batch (prepare, index).

``run_job`` is the workflow body: a breadth-first walk from the job's items (following links
found in HTML pages up to ``depth``, on the seeds' hosts only unless told otherwise, at most
``max_documents``), batch by batch: ``prepare`` (fetch → normalize → containerize) then
``index``. Decisions live in the body; effects in the steps, each idempotent by content hash.

Under the durable spine (``vsm_mcp.durable``: DBOS) the job is the workflow ``ingest_workflow``
on the queue ``ingest``: after a crash it resumes from its last completed step, and the step
that was in flight runs again — harmless, because it adds nothing that is already there (a
re-fetch is a conditional request, a version is unique per content hash, re-indexing a
container replaces its chunks). Without a spine (a server run alone, unit tests) the same body
runs as a plain task: same results, not durable.

Progress: ``ingest.<tenant>.<job>.{started,progress,failed,finished}`` on the bus, and the
latest totals as the workflow event ``progress`` (``ingest_status`` reads it).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from dbos import DBOS

from servers.content import pipeline
from servers.content.engine import ContentEngine
from servers.content.pipeline import Item
from vsm_mcp import durable
from vsm_mcp.bus.events import Event
from vsm_mcp.errors import ConfigError, NotFound

log = logging.getLogger("servers.content")
QUEUE = "ingest"
MAX_FAILURES_KEPT = 100
ENGINE_WAIT_S = 60.0

_engine: ContentEngine | None = None
# Jobs per process at once; each job's own batches already keep the cores busy.
durable.declare_queue(QUEUE, worker_concurrency=2)


def attach(engine: ContentEngine) -> None:
    """Make ``engine`` the one the durable steps of this process use (``build`` calls it)."""
    global _engine
    _engine = engine


async def current_engine() -> ContentEngine:
    """The attached engine; a workflow recovered at launch may run before the server is built."""
    deadline = time.monotonic() + ENGINE_WAIT_S
    while _engine is None:
        if time.monotonic() > deadline:
            raise ConfigError("no content engine in this process (the content server is not mounted)")
        await asyncio.sleep(0.05)
    return _engine


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def workflow_id(job: str) -> str:
    return f"ingest-{job}"


class Steps(Protocol):
    async def prepare(self, tenant: str, job: str, items: list[dict[str, Any]], want_links: bool) -> dict[str, Any]: ...
    async def index(self, tenant: str, job: str, ids: list[str]) -> dict[str, Any]: ...
    async def progress(self, tenant: str, job: str, kind: str, totals: dict[str, Any]) -> None: ...


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return ""


async def run_job(spec: dict[str, Any], steps: Steps) -> dict[str, Any]:
    """The workflow body (deterministic given the steps' recorded outputs).

    Batches go in waves: ``parallel`` prepare steps at once, gathered with the index step of
    the previous wave, so fetching (network), normalizing (CPU) and indexing (embedding CPU,
    storage and database I/O) of different batches overlap. The steps are started in a fixed
    order, so a resumed workflow meets its recorded steps in the same order.
    """
    tenant, job = spec["tenant"], spec["job"]
    batch, depth, limit = int(spec["batch_size"]), int(spec.get("depth", 0)), int(spec["max_documents"])
    parallel = max(1, int(spec.get("parallel", 1)))
    template = dict(spec.get("template") or {})
    frontier: list[dict[str, Any]] = [dict(it) for it in spec["items"]][:limit]
    seen = {it["ref"] for it in frontier}
    hosts = {_host(it["ref"]) for it in frontier if it["kind"] == "url"}
    totals: dict[str, Any] = {
        "job": job, "tenant": tenant, "state": "running", "stage": "fetch", "documents": 0, "total": len(frontier),
        "created": 0, "unchanged": 0, "failed": 0, "bytes": 0, "indexed": 0, "chunks": 0, "failures": [],
    }
    await steps.progress(tenant, job, "started", totals)
    pending: list[str] = []  # containers prepared but not yet indexed

    async def index(ids: list[str]) -> None:
        if ids:
            idx = await steps.index(tenant, job, ids)
            totals["indexed"] += idx["indexed"]
            totals["chunks"] += idx["chunks"]

    level = 0
    while frontier:
        following: list[dict[str, Any]] = []
        wave = batch * parallel
        for start in range(0, len(frontier), wave):
            parts = [frontier[i : i + batch] for i in range(start, min(start + wave, len(frontier)), batch)]
            flush, pending = pending, []
            gathered = await asyncio.gather(
                *[steps.prepare(tenant, job, part, level < depth) for part in parts], index(flush)
            )
            results = [r for r in gathered[:-1] if r is not None]
            for part, res in zip(parts, results, strict=True):
                pending.extend(res["containers"])
                seen.update(res["sources"])
                for link in res["links"]:
                    if len(seen) >= limit:
                        break
                    if link in seen or (spec.get("same_host", True) and _host(link) not in hosts):
                        continue
                    seen.add(link)
                    following.append({**template, "kind": "url", "ref": link})
                totals["documents"] += len(part)
                for key in ("created", "unchanged", "bytes"):
                    totals[key] += res[key]
                totals["failed"] += len(res["failed"])
                totals["failures"] = (totals["failures"] + res["failed"])[-MAX_FAILURES_KEPT:]
            totals["total"] = len(frontier) - (start + sum(len(p) for p in parts)) + totals["documents"] + len(following)
            await steps.progress(tenant, job, "progress", totals)
        frontier = following
        level += 1
    totals["stage"] = "index"
    await index(pending)
    totals["state"], totals["stage"] = "done", "done"
    await steps.progress(tenant, job, "finished", totals)
    return totals


async def _publish(engine: ContentEngine, tenant: str, job: str, kind: str, data: dict[str, Any]) -> None:
    topic = f"ingest.{tenant}.{job}.{kind}"
    await engine.ctx.bus.publish(Event(topic=topic, tenant=tenant, type=f"ingest.{kind}", data=data))


async def prepare_step(tenant: str, job: str, items: list[dict[str, Any]], want_links: bool) -> dict[str, Any]:
    engine = await current_engine()
    res = await pipeline.prepare(engine, tenant, [Item(**it) for it in items], want_links)
    for failure in res["failed"]:
        await _publish(engine, tenant, job, "failed", failure)
    return res


async def index_step(tenant: str, job: str, ids: list[str]) -> dict[str, Any]:
    return await pipeline.index(await current_engine(), tenant, ids)


# --- plain runner (no spine) --------------------------------------------------------------

class LocalSteps:
    """The steps called directly; progress kept in memory. Not durable."""

    def __init__(self, engine: ContentEngine, board: dict[str, dict[str, Any]]) -> None:
        self.engine, self.board = engine, board

    async def prepare(self, tenant: str, job: str, items: list[dict[str, Any]], want_links: bool) -> dict[str, Any]:
        return await prepare_step(tenant, job, items, want_links)

    async def index(self, tenant: str, job: str, ids: list[str]) -> dict[str, Any]:
        return await index_step(tenant, job, ids)

    async def progress(self, tenant: str, job: str, kind: str, totals: dict[str, Any]) -> None:
        self.board[job] = dict(totals)
        await _publish(self.engine, tenant, job, kind, _brief(totals))


def _brief(totals: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in totals.items() if k != "failures"}


# --- durable runner (DBOS) ----------------------------------------------------------------

@DBOS.step(retries_allowed=True, interval_seconds=1.0, max_attempts=3)
async def _prepare_durable(tenant: str, job: str, items: list[dict[str, Any]], want_links: bool) -> dict[str, Any]:
    return await prepare_step(tenant, job, items, want_links)


@DBOS.step(retries_allowed=True, interval_seconds=1.0, max_attempts=3)
async def _index_durable(tenant: str, job: str, ids: list[str]) -> dict[str, Any]:
    return await index_step(tenant, job, ids)


class DurableSteps:
    async def prepare(self, tenant: str, job: str, items: list[dict[str, Any]], want_links: bool) -> dict[str, Any]:
        return await _prepare_durable(tenant, job, items, want_links)

    async def index(self, tenant: str, job: str, ids: list[str]) -> dict[str, Any]:
        return await _index_durable(tenant, job, ids)

    async def progress(self, tenant: str, job: str, kind: str, totals: dict[str, Any]) -> None:
        await DBOS.set_event_async("progress", dict(totals))
        # Published from the workflow body: a resumed workflow may repeat a progress event
        # (events are notifications, the workflow is the record).
        await _publish(await current_engine(), tenant, job, kind, _brief(totals))


@DBOS.workflow()
async def ingest_workflow(spec: dict[str, Any]) -> dict[str, Any]:
    return await run_job(spec, DurableSteps())


def _spine() -> durable.Spine | None:
    """The running durable spine, or None (a server run alone, a runtime without a role)."""
    return durable.current() if durable.is_running() else None


def _spec_of(st: Any) -> dict[str, Any]:
    """The job spec a workflow was started with (its first argument), or {}."""
    args = (st.input or {}).get("args") if isinstance(st.input, dict) else None
    spec = args[0] if args else {}
    return spec if isinstance(spec, dict) else {}


async def pending_jobs(tenant: str) -> list[str]:
    """Ingest jobs of ``tenant`` still pending or queued in the durable spine (none without one)."""
    if _spine() is None:
        return []
    rows = await DBOS.list_workflows_async(workflow_id_prefix="ingest-", status=["PENDING", "ENQUEUED"])
    out = []
    for st in rows:
        spec = _spec_of(st)
        if spec.get("tenant") == tenant:
            out.append(str(spec["job"]))
    return out


class JobRunner:
    """Starts jobs (durably when the spine runs) and answers their status."""

    def __init__(self, engine: ContentEngine) -> None:
        self.engine = engine
        self.board: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}

    def spec(self, tenant: str, items: Sequence[Item], *, depth: int, max_documents: int, same_host: bool,
             template: dict[str, Any]) -> dict[str, Any]:
        return {
            "tenant": tenant, "job": new_job_id(), "items": [it.as_json() for it in items], "depth": depth,
            "max_documents": max_documents, "same_host": same_host, "template": template,
            "batch_size": self.engine.batch_size, "parallel": self.engine.parallel_batches,
        }

    async def start(self, spec: dict[str, Any]) -> str:
        job = str(spec["job"])
        spine = _spine()
        if spine is not None:
            from dbos import SetWorkflowID

            with SetWorkflowID(workflow_id(job)):
                await spine.queue(QUEUE).enqueue_async(ingest_workflow, spec)
        else:
            self.board[job] = {"job": job, "tenant": spec["tenant"], "state": "queued"}
            self.tasks[job] = asyncio.create_task(self._local(spec), name=f"ingest-{job}")
        return job

    async def _local(self, spec: dict[str, Any]) -> dict[str, Any]:
        try:
            return await run_job(spec, LocalSteps(self.engine, self.board))
        except Exception as exc:
            log.warning("ingest job %s failed", spec["job"], exc_info=True)
            self.board[spec["job"]] = {**self.board.get(spec["job"], {}), "state": "failed", "error": str(exc)}
            await _publish(self.engine, spec["tenant"], spec["job"], "failed", {"error": str(exc)})
            raise

    async def status(self, tenant: str, job: str) -> dict[str, Any]:
        if _spine() is not None:
            progress = await DBOS.get_event_async(workflow_id(job), "progress", timeout_seconds=0)
            st = await DBOS.get_workflow_status_async(workflow_id(job))
            owner = progress.get("tenant") if progress is not None else _spec_of(st).get("tenant") if st else None
            if st is None or owner != tenant:
                raise NotFound(f"no ingest job {job!r}")
            out = dict(progress or {"job": job, "tenant": tenant})
            if st.status in ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
                out["state"], out["error"] = "failed", str(st.error or st.status)
            elif st.status in ("ENQUEUED", "PENDING") and out.get("state") != "running":
                out["state"] = "queued" if st.status == "ENQUEUED" else "running"
            return out
        found = self.board.get(job)
        if found is None or found.get("tenant") != tenant:
            raise NotFound(f"no ingest job {job!r}")
        return dict(found)

    async def wait(self, tenant: str, job: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = await self.status(tenant, job)
            if st.get("state") in ("done", "failed") or time.monotonic() > deadline:
                return st
            await asyncio.sleep(0.1)

    async def aclose(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
