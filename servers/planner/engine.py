"""Plan execution on the durable spine: one DBOS workflow per plan.

``run_plan`` reads like the scheduler it is: every plan step is an asyncio task that waits for
the steps it runs after, then runs. The workflow is the plan's durable shell — queued start on
any process running the spine, exactly one runner, recovery after a crash or a dead worker —
and the record of each plan step is its row in ``plan_steps``, written as the step starts (the
evidence that a call was in flight) and as it ends (its result). DBOS step records per plan
step would duplicate those rows at two more commits per step (docs/ARCHITECTURE.md,
"Planner"); the rows are written in group commits (store.py). After a crash DBOS replays the
workflow and every step runs its function again, which decides what "again" may mean:

* its row says ``running`` — the call was in flight when the process died. If the tool is
  idempotent (``idempotentHint`` or the manifest's ``idempotent`` flag, captured at plan_create)
  it is called again with the same idempotency key; otherwise the step becomes ``uncertain``,
  the plan pauses, and the step waits for plan_resume's decision (retry | succeeded | failed).
* its row says ``succeeded``, ``failed`` or ``skipped`` — it finished before the crash: the
  stored outcome is returned and the tool is not called again.

Every call goes through the router's dispatcher (``ctx.tools.call``) as the plan's owner, with
``_meta``: ``io.vsm/idempotency-key`` = ``<plan>:<step>`` (the same on every attempt) and a W3C
``traceparent`` carrying the plan's trace id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from dbos import DBOS

from servers.planner.dag import resolve
from servers.planner.events import PlanEvents
from servers.planner.store import ATTEMPT, PlanStore, lease_expired
from vsm_mcp import durable
from vsm_mcp.auth import Principal
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments, RateLimited, UpstreamTimeout, UpstreamUnavailable, VsmError
from vsm_mcp.models import utcnow

log = logging.getLogger("servers.planner")

QUEUE = "plans"
durable.declare_queue(QUEUE, worker_concurrency=32, polling_interval_sec=0.2)

IDEMPOTENCY_KEY = "io.vsm/idempotency-key"
Outcome = dict[str, Any]  # {"state": succeeded|failed|skipped, "result": …, "error": str}


@dataclass
class Engine:
    """The process-wide pieces the workflow's steps use (DBOS workflows are module-level
    functions; the planner server binds one Engine per process when it is built)."""

    ctx: ServerContext
    store: PlanStore
    events: PlanEvents
    parallelism: int
    poll_s: float = 0.25
    _slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _wake: dict[str, asyncio.Event] = field(default_factory=dict)

    def slot(self, tenant: str) -> asyncio.Semaphore:
        """Bounds the tool calls in flight per tenant in this process (VSM_PLAN_TENANT_PARALLELISM)."""
        sem = self._slots.get(tenant)
        if sem is None:
            sem = self._slots[tenant] = asyncio.Semaphore(self.parallelism)
        return sem

    def poke(self, plan_id: str) -> None:
        """Wake this process's steps waiting on ``plan_id`` (a pause, decision or agent report)."""
        ev = self._wake.pop(plan_id, None)
        if ev is not None:
            ev.set()

    async def nap(self, plan_id: str) -> None:
        """Wait for a poke, or ``poll_s`` — changes made by another process are only seen by polling."""
        ev = self._wake.setdefault(plan_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), self.poll_s)


_engine: Engine | None = None


def bind(engine: Engine) -> None:
    global _engine
    _engine = engine


def current() -> Engine:
    if _engine is None:
        raise RuntimeError("the planner engine is not bound in this process (build the planner server first)")
    return _engine


def traceparent(trace_id: str, plan_id: str, step_id: str, attempt: int) -> str:
    span = hashlib.sha256(f"{plan_id}:{step_id}:{attempt}".encode()).hexdigest()[:16]
    return f"00-{trace_id}-{span}-01"


def result_json(result: Any) -> dict[str, Any]:
    """A CallToolResult as the JSON a ``$from`` path walks: structured, text, content."""
    blocks = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content]
    text = "\n".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    return {"structured": result.structured_content, "text": text, "content": blocks}


# --- the workflow ------------------------------------------------------------------------------
@DBOS.step()
async def start_plan(tenant: str, plan_id: str) -> dict[str, Any]:
    plan = await current().store.plan(tenant, plan_id)
    return {
        "steps": plan.spec, "trace_id": plan.trace_id, "owner_key": plan.owner_key,
        "owner_scopes": list(plan.owner_scopes),
    }


@DBOS.step()
async def finish_plan(tenant: str, plan_id: str, trace_id: str, counts: dict[str, int], error: str) -> str:
    """Record the plan's end (``counts``: steps per final state) unless it was cancelled meanwhile."""
    eng = current()
    failed = error or any(st != "succeeded" for st in counts)
    final = await eng.store.end_plan(tenant, plan_id, "failed" if failed else "succeeded", error)
    await eng.events.plan(tenant, plan_id, final, trace_id, counts=counts, error=error)
    return final


@DBOS.workflow()
async def run_plan(tenant: str, plan_id: str) -> str:
    """Run the plan's DAG: every step starts when the steps it runs after have succeeded (it is
    skipped if one did not), at most VSM_PLAN_TENANT_PARALLELISM tool calls at a time."""
    plan = await start_plan(tenant, plan_id)
    steps: list[dict[str, Any]] = plan["steps"]
    tasks: dict[str, asyncio.Future[Outcome]] = {}

    async def one(step: dict[str, Any]) -> Outcome:
        deps = [await tasks[d] for d in step["after"]]
        sid = step["id"]
        if any(d["state"] != "succeeded" for d in deps):
            return await skip_step(tenant, plan_id, sid, plan["trace_id"], "a step it runs after did not succeed")
        try:
            args = resolve(step["arguments"], {a: tasks[a].result()["result"] for a in _refs(step["arguments"])})
        except InvalidArguments as exc:
            return await fail_step(tenant, plan_id, sid, plan["trace_id"], exc.message)
        fn = run_agent_step if step.get("run") == "agent" else run_tool_step
        return await fn(tenant, plan_id, plan, step, args)

    for step in steps:  # topological order: every task a step awaits exists before it
        tasks[step["id"]] = asyncio.ensure_future(one(step))
    try:
        outcomes = await asyncio.gather(*tasks.values())
    except Exception as exc:  # the infrastructure failed (database, bus): the plan fails, visibly
        for t in tasks.values():
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return await finish_plan(tenant, plan_id, plan["trace_id"], {}, f"the engine failed: {exc}"[:2000])
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["state"]] = counts.get(o["state"], 0) + 1
    error = next((f"step {s['id']!r} failed: {o['error']}" for s, o in zip(steps, outcomes, strict=True)
                  if o["state"] == "failed"), "")
    return await finish_plan(tenant, plan_id, plan["trace_id"], counts, error)


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        if "$from" in value:
            return {value["$from"]}
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    return set()


async def enqueue(tenant: str, plan_id: str) -> str:
    """Start the plan's workflow on the ``plans`` queue (any process listening may run it).
    The workflow id is derived from the plan id, so a second enqueue is a no-op."""
    from dbos import SetWorkflowID

    wf_id = f"plan-{plan_id}"
    with SetWorkflowID(wf_id):
        await durable.queue(QUEUE).enqueue_async(run_plan, tenant, plan_id)
    return wf_id


# --- the steps ---------------------------------------------------------------------------------
async def skip_step(tenant: str, plan_id: str, step_id: str, trace_id: str, reason: str) -> Outcome:
    eng = current()
    if await eng.store.set_step(tenant, plan_id, step_id, ("pending", "ready"), state="skipped",
                                error=reason, ended_at=utcnow()):
        await eng.events.step(tenant, plan_id, step_id, "skipped", trace_id, reason=reason)
    return {"state": "skipped", "result": None, "error": reason}


async def fail_step(tenant: str, plan_id: str, step_id: str, trace_id: str, error: str) -> Outcome:
    eng = current()
    await eng.store.set_step(tenant, plan_id, step_id, ("pending", "ready", "running"), state="failed",
                             error=error, ended_at=utcnow())
    await eng.events.step(tenant, plan_id, step_id, "failed", trace_id, error=error)
    return {"state": "failed", "result": None, "error": error}


def _stored(row: Any) -> Outcome:
    return {"state": row.state, "result": row.result, "error": row.error}


async def run_tool_step(
    tenant: str, plan_id: str, plan: dict[str, Any], step: dict[str, Any], args: dict[str, Any]
) -> Outcome:
    """One router step: start it (or learn what a previous run left), call, record. The tenant's
    slot is held from the start to the call's answer only: waiting for a pause to end, a decision
    or the end's commit holds none."""
    eng, sid, trace = current(), step["id"], plan["trace_id"]
    while True:
        async with eng.slot(tenant):
            begin = await eng.store.begin_step(tenant, plan_id, sid)
            go = begin.kind == "fresh" or (begin.kind == "in_flight" and bool(step.get("idempotent")))
            if go:
                if begin.kind == "in_flight":
                    await eng.store.set_step(tenant, plan_id, sid, ("running",), attempts=ATTEMPT)
                    await eng.events.step(tenant, plan_id, sid, "retry", trace, reason="in flight at a crash; idempotent")
                answer = await _call_with_retries(eng, tenant, plan_id, plan, step, args)
        if go:
            return await _finish(eng, tenant, plan_id, sid, trace, *answer)
        if begin.kind == "held":
            await eng.nap(plan_id)
            continue
        if begin.kind == "stopped":
            return await skip_step(tenant, plan_id, sid, trace, f"plan is {begin.plan_state}")
        if begin.kind == "done":
            assert begin.row is not None
            return _stored(begin.row)
        # in flight at a crash and not idempotent, or already waiting: a decision is needed
        decided = await _await_decision(eng, tenant, plan_id, sid, trace, begin.kind == "in_flight")
        if decided is not None:
            return decided
        async with eng.slot(tenant):  # decided: retry
            answer = await _call_with_retries(eng, tenant, plan_id, plan, step, args)
        return await _finish(eng, tenant, plan_id, sid, trace, *answer)


async def _await_decision(eng: Engine, tenant: str, plan_id: str, sid: str, trace: str, fresh: bool) -> Outcome | None:
    """The non-idempotent step was in flight at a crash: mark it uncertain, pause the plan, wait
    for plan_resume's decision. Returns the outcome, or None to call the tool again (retry)."""
    if fresh:
        await eng.store.set_step(tenant, plan_id, sid, ("running", "claimed"), state="uncertain",
                                 error="in flight at a crash; the tool is not idempotent")
        reason = f"step {sid!r} was in flight at a crash and its tool is not idempotent: resume with a decision"
        await eng.events.step(tenant, plan_id, sid, "uncertain", trace)
        if await eng.store.pause_for(tenant, plan_id, reason):
            await eng.events.plan(tenant, plan_id, "paused", trace, reason=reason)
    while True:
        row = await eng.store.step(tenant, plan_id, sid)
        plan_state = (await eng.store.plan(tenant, plan_id)).state
        if row.decision and plan_state == "running":
            break
        if plan_state in ("cancelled", "failed"):
            await eng.store.set_step(tenant, plan_id, sid, ("uncertain",), state="skipped",
                                     error=f"plan is {plan_state}", ended_at=utcnow())
            return {"state": "skipped", "result": None, "error": f"plan is {plan_state}"}
        await eng.nap(plan_id)
    if row.decision == "retry":
        await eng.store.set_step(tenant, plan_id, sid, ("uncertain",), state="running", decision="",
                                 attempts=row.attempts + 1, error="")
        return None
    state = "succeeded" if row.decision == "succeeded" else "failed"
    error = "" if state == "succeeded" else "failed by decision after a crash"
    result: dict[str, Any] | None = (
        {"structured": row.decision_result, "text": "", "content": []} if state == "succeeded" else None
    )
    await eng.store.set_step(tenant, plan_id, sid, ("uncertain",), state=state, result=result, error=error,
                             ended_at=utcnow())
    await eng.events.step(tenant, plan_id, sid, state, trace, decision=row.decision)
    return {"state": state, "result": result, "error": error}


RETRYABLE = (RateLimited, UpstreamUnavailable)


Answer = tuple[str, dict[str, Any] | None, str, float]


async def _call_with_retries(
    eng: Engine, tenant: str, plan_id: str, plan: dict[str, Any], step: dict[str, Any], args: dict[str, Any]
) -> Answer:
    """Call the step's tool (retrying as its ``retry`` allows); (state, result, error, started)."""
    sid, trace = step["id"], plan["trace_id"]
    await eng.events.step(tenant, plan_id, sid, "running", trace, tool=step["tool"])
    principal = Principal(tenant, frozenset(plan["owner_scopes"]), plan["owner_key"])
    attempts = int(step.get("retry", {}).get("attempts", 1))
    backoff = float(step.get("retry", {}).get("backoff_s", 0.5))
    timeout = step.get("timeout_s")
    error = ""
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            await asyncio.sleep(backoff * 2 ** (attempt - 2))
            await eng.store.set_step(tenant, plan_id, sid, ("running",), attempts=ATTEMPT)
            await eng.events.step(tenant, plan_id, sid, "retry", trace, attempt=attempt, error=error)
        meta = {IDEMPOTENCY_KEY: f"{plan_id}:{sid}", "traceparent": traceparent(trace, plan_id, sid, attempt),
                "io.vsm/plan": plan_id, "io.vsm/step": sid}
        started = time.perf_counter()
        retryable = True
        try:
            async with asyncio.timeout(timeout):
                result: Any = await eng.ctx.tools.call(principal, step["tool"], args, source="planner", meta=meta)
        except TimeoutError:
            error, retryable = f"timed out after {timeout:g}s", bool(step.get("idempotent"))
        except UpstreamTimeout as exc:
            error, retryable = exc.message, bool(step.get("idempotent"))
        except RETRYABLE as exc:
            error = exc.message
        except VsmError as exc:  # refused by the pipeline (grants, policy, arguments): retrying won't help
            error, retryable = f"{exc.label}: {exc.message}", False
        else:
            body = result_json(result)
            if not result.is_error:
                return "succeeded", body, "", started
            error = body["text"][:2000] or "tool error"
        if not retryable:
            break
    return "failed", None, error, 0.0


async def _finish(
    eng: Engine, tenant: str, plan_id: str, sid: str, trace: str, state: str, result: dict[str, Any] | None,
    error: str, started: float,
) -> Outcome:
    await eng.store.finish_step(tenant, plan_id, sid, state, result, error)
    data: dict[str, Any] = {"error": error} if error else {"ms": round((time.perf_counter() - started) * 1000, 2)}
    await eng.events.step(tenant, plan_id, sid, state, trace, **data)
    return {"state": state, "result": result, "error": error}


async def run_agent_step(
    tenant: str, plan_id: str, plan: dict[str, Any], step: dict[str, Any], args: dict[str, Any]
) -> Outcome:
    """An agent step: offer it (``ready`` with its resolved arguments), then wait for an agent's
    step_complete / step_fail. A lease that runs out puts the step back to ``ready``."""
    eng, sid, trace = current(), step["id"], plan["trace_id"]
    if await eng.store.set_step(tenant, plan_id, sid, ("pending",), state="ready", arguments=args):
        await eng.events.step(tenant, plan_id, sid, "ready", trace, tool=step["tool"], run="agent")
    while True:
        row = await eng.store.step(tenant, plan_id, sid)
        if row.state in ("succeeded", "failed", "skipped"):
            return _stored(row)
        plan_state = (await eng.store.plan(tenant, plan_id)).state
        if plan_state in ("cancelled", "failed"):
            if await eng.store.set_step(tenant, plan_id, sid, ("pending", "ready", "claimed", "running"),
                                        state="skipped", error=f"plan is {plan_state}", ended_at=utcnow()):
                return {"state": "skipped", "result": None, "error": f"plan is {plan_state}"}
            continue
        if row.state in ("claimed", "running") and lease_expired(row):
            if await eng.store.expire_leases(tenant, plan_id, sid):
                await eng.events.step(tenant, plan_id, sid, "ready", trace, reason=f"lease of {row.agent} expired")
        await eng.nap(plan_id)
