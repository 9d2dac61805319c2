"""Reads and guarded writes of plans and steps (tables.py), always inside the caller's tenant.

Every state change is one conditional UPDATE (``WHERE state IN <allowed sources>``): two writers
racing — two agents claiming one step, a pause against the engine starting a step — cannot both
win, and the loser is told the state it found (states.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, or_, update
from sqlalchemy.engine import Connection
from sqlmodel import col, select

from servers.planner.commits import GroupCommit
from servers.planner.dag import Step
from servers.planner.states import PLAN_ACTIONS, refuse_plan, refuse_step
from servers.planner.tables import PlanRow, PlanStepRow
from vsm_mcp.auth import Principal
from vsm_mcp.db import Database
from vsm_mcp.errors import NotFound
from vsm_mcp.models import utcnow

STEPS = PlanStepRow.__table__  # type: ignore[attr-defined]
PLANS = PlanRow.__table__  # type: ignore[attr-defined]


# The hot path's two statements, built once (bind parameters, so SQLAlchemy compiles them once).
BEGIN = (
    STEPS.update()
    .where(
        STEPS.c.id == bindparam("b_key"), STEPS.c.tenant_id == bindparam("b_tenant"),
        STEPS.c.state.in_(("pending", "ready")),
        exists().where(PLANS.c.id == bindparam("b_plan"), PLANS.c.tenant_id == bindparam("b_tenant"),
                       PLANS.c.state == "running"),
    )
    .values(state="running", attempts=STEPS.c.attempts + 1, started_at=bindparam("b_now"),
            updated_at=bindparam("b_now"))
)
FINISH = (
    STEPS.update()
    .where(STEPS.c.id == bindparam("b_key"), STEPS.c.tenant_id == bindparam("b_tenant"), STEPS.c.state == "running")
    .values(state=bindparam("b_state"), result=bindparam("b_result", type_=STEPS.c.result.type),
            error=bindparam("b_error"), ended_at=bindparam("b_now"), updated_at=bindparam("b_now"))
)
ATTEMPT = object()  # set_step(attempts=ATTEMPT): one more attempt, counted in the database


def step_key(plan_id: str, step_id: str) -> str:
    return f"{plan_id}:{step_id}"


def aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time here is UTC."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


@dataclass
class Begin:
    """What ``begin_step`` found: ``fresh`` (this call starts it), ``held`` (plan paused),
    ``stopped`` (plan cancelled/failed), ``in_flight`` (a previous run died inside the call),
    ``uncertain`` (waiting for a decision), or ``done`` (finished before; ``row`` has the outcome)."""

    kind: str
    row: PlanStepRow | None = None
    plan_state: str = ""


class PlanStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.commits = GroupCommit(db)

    # --- plans ---------------------------------------------------------------------------
    async def create(
        self, tenant: str, plan_id: str, name: str, goal: str, owner: Principal, steps: list[Step],
        spec: list[dict[str, Any]],
    ) -> PlanRow:
        plan = PlanRow(
            id=plan_id, tenant_id=tenant, name=name, goal=goal, state="draft", owner_key=owner.key_id,
            owner_scopes=sorted(owner.scopes), spec=spec,
        )
        async with self.db.tenant(tenant) as s:
            s.add(plan)
            for seq, st in enumerate(steps):
                s.add(PlanStepRow(
                    id=step_key(plan_id, st.id), tenant_id=tenant, plan_id=plan_id, step_id=st.id, seq=seq,
                    tool=st.tool, run=st.run,
                ))
        return plan

    async def plan(self, tenant: str, plan_id: str) -> PlanRow:
        async with self.db.tenant(tenant) as s:
            row = (await s.execute(select(PlanRow).where(col(PlanRow.id) == plan_id))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no plan {plan_id!r} in this tenant", data={"plan_id": plan_id})
        return row

    async def plans(self, tenant: str, state: str | None, limit: int) -> list[PlanRow]:
        stmt = select(PlanRow).order_by(col(PlanRow.created_at).desc()).limit(limit)
        if state:
            stmt = stmt.where(col(PlanRow.state) == state)
        async with self.db.tenant(tenant) as s:
            return list((await s.execute(stmt)).scalars())

    async def move_plan(self, tenant: str, plan_id: str, action: str, **values: Any) -> PlanRow:
        """Move the plan by ``action`` (states.PLAN_ACTIONS) or raise Conflict naming its state."""
        froms, target = PLAN_ACTIONS[action]
        async with self.db.tenant(tenant) as s:
            res = await s.execute(
                update(PlanRow)
                .where(col(PlanRow.id) == plan_id, col(PlanRow.state).in_(froms))
                .values(state=target, updated_at=utcnow(), **values)
                .execution_options(synchronize_session=False)
            )
            row = (await s.execute(select(PlanRow).where(col(PlanRow.id) == plan_id))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no plan {plan_id!r} in this tenant", data={"plan_id": plan_id})
        if not getattr(res, "rowcount", 0):
            raise refuse_plan(plan_id, row.state, action)
        return row

    async def end_plan(self, tenant: str, plan_id: str, state: str, error: str = "") -> str:
        """The engine's last word: ``state`` unless the plan was cancelled meanwhile. Returns the final state."""
        async with self.db.tenant(tenant) as s:
            await s.execute(
                update(PlanRow)
                .where(col(PlanRow.id) == plan_id, col(PlanRow.state).in_(("running", "paused")))
                .values(state=state, error=error, ended_at=utcnow(), updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            row = (await s.execute(select(PlanRow.state).where(col(PlanRow.id) == plan_id))).scalar_one()
        return str(row)

    async def pause_for(self, tenant: str, plan_id: str, reason: str) -> bool:
        async with self.db.tenant(tenant) as s:
            res = await s.execute(
                update(PlanRow).where(col(PlanRow.id) == plan_id, col(PlanRow.state) == "running")
                .values(state="paused", pause_reason=reason, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return bool(getattr(res, "rowcount", 0))

    # --- steps ---------------------------------------------------------------------------
    async def steps(self, tenant: str, plan_id: str) -> list[PlanStepRow]:
        async with self.db.tenant(tenant) as s:
            stmt = select(PlanStepRow).where(col(PlanStepRow.plan_id) == plan_id).order_by(col(PlanStepRow.seq))
            return list((await s.execute(stmt)).scalars())

    async def step(self, tenant: str, plan_id: str, step_id: str) -> PlanStepRow:
        async with self.db.tenant(tenant) as s:
            row = (await s.execute(
                select(PlanStepRow).where(col(PlanStepRow.id) == step_key(plan_id, step_id))
            )).scalar_one_or_none()
        if row is None:
            raise NotFound(f"plan {plan_id} has no step {step_id!r}", data={"plan_id": plan_id, "step_id": step_id})
        return row

    async def set_step(
        self, tenant: str, plan_id: str, step_id: str, from_states: Iterable[str], **values: Any
    ) -> bool:
        """Guarded write of one step: applies only while its state is in ``from_states``."""
        if "attempts" in values and values["attempts"] is ATTEMPT:
            values["attempts"] = STEPS.c.attempts + 1
        stmt = (
            STEPS.update()
            .where(STEPS.c.id == step_key(plan_id, step_id), STEPS.c.tenant_id == tenant,
                   STEPS.c.state.in_(tuple(from_states)))
            .values(updated_at=utcnow(), **values)
        )

        def write(conn: Connection) -> bool:
            return bool(conn.execute(stmt).rowcount)

        return bool(await self.commits.run(tenant, write))

    async def finish_step(
        self, tenant: str, plan_id: str, step_id: str, state: str, result: dict[str, Any] | None, error: str
    ) -> bool:
        """Record the end of a running router step (the hot path: one prepared statement)."""
        params = {"b_key": step_key(plan_id, step_id), "b_tenant": tenant, "b_state": state, "b_result": result,
                  "b_error": error, "b_now": utcnow()}
        return bool(await self.commits.run(tenant, lambda conn: conn.execute(FINISH, params).rowcount))

    async def begin_step(self, tenant: str, plan_id: str, step_id: str) -> Begin:
        """Mark a router step running (attempt +1) if it has not started and its plan is running —
        one statement, so a pause and a start cannot both win — else say what was found."""
        params = {"b_key": step_key(plan_id, step_id), "b_tenant": tenant, "b_plan": plan_id, "b_now": utcnow()}

        def write(conn: Connection) -> tuple[PlanStepRow, str] | None:
            if conn.execute(BEGIN, params).rowcount:
                return None
            row = conn.execute(STEPS.select().where(STEPS.c.id == params["b_key"], STEPS.c.tenant_id == tenant)).one()
            state = conn.execute(
                PLANS.select().with_only_columns(PLANS.c.state).where(PLANS.c.id == plan_id, PLANS.c.tenant_id == tenant)
            ).scalar_one()
            return PlanStepRow.model_validate(dict(row._mapping)), str(state)

        found = await self.commits.run(tenant, write)
        if found is None:
            return Begin("fresh")
        row, plan_state = found
        if row.state in ("pending", "ready"):
            return Begin("held" if plan_state in ("paused", "running") else "stopped", row, plan_state)
        if row.state in ("running", "claimed"):
            return Begin("in_flight", row, plan_state)
        if row.state == "uncertain":
            return Begin("uncertain", row, plan_state)
        return Begin("done", row, plan_state)

    # --- agents --------------------------------------------------------------------------
    async def claimable(
        self, tenant: str, agent: str, tools: Sequence[str] | None, plan_id: str | None, limit: int = 20
    ) -> list[PlanStepRow]:
        """Agent steps this agent may claim now: ready (and not handed to someone else), or held
        under an expired lease; oldest plan first."""
        now = utcnow()
        stmt = (
            select(PlanStepRow)
            .join(PlanRow, and_(col(PlanRow.id) == PlanStepRow.plan_id, col(PlanRow.tenant_id) == PlanStepRow.tenant_id))
            .where(
                col(PlanStepRow.run) == "agent",
                col(PlanRow.state) == "running",
                or_(
                    and_(col(PlanStepRow.state) == "ready", col(PlanStepRow.assigned_to).in_(("", agent))),
                    and_(col(PlanStepRow.state).in_(("claimed", "running")), col(PlanStepRow.lease_until) < now),
                ),
            )
            .order_by(col(PlanRow.created_at), col(PlanStepRow.seq))
            .limit(limit)
        )
        if tools:
            stmt = stmt.where(col(PlanStepRow.tool).in_(tuple(tools)))
        if plan_id:
            stmt = stmt.where(col(PlanStepRow.plan_id) == plan_id)
        async with self.db.tenant(tenant) as s:
            return list((await s.execute(stmt)).scalars())

    async def take(self, tenant: str, row: PlanStepRow, agent: str, lease_s: float) -> bool:
        """Claim ``row`` for ``agent`` if it is still as ``claimable`` saw it (one winner)."""
        now = utcnow()
        still = or_(
            and_(col(PlanStepRow.state) == "ready", col(PlanStepRow.assigned_to).in_(("", agent))),
            and_(col(PlanStepRow.state).in_(("claimed", "running")), col(PlanStepRow.lease_until) < now),
        )
        async with self.db.tenant(tenant) as s:
            res = await s.execute(
                update(PlanStepRow).where(col(PlanStepRow.id) == row.id, still)
                .values(
                    state="claimed", agent=agent, assigned_to="", lease_until=now + timedelta(seconds=lease_s),
                    attempts=col(PlanStepRow.attempts) + 1, started_at=now, updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
        return bool(getattr(res, "rowcount", 0))

    async def held_by(self, tenant: str, plan_id: str, step_id: str, agent: str, action: str) -> PlanStepRow:
        """The step, if ``agent`` holds it (claimed or running); else Conflict naming who does."""
        row = await self.step(tenant, plan_id, step_id)
        if row.run != "agent":
            raise refuse_step(plan_id, step_id, row.state, f"{action}: it is run by the router, not by agents")
        if row.state not in ("claimed", "running") or row.agent != agent:
            raise refuse_step(plan_id, step_id, row.state, f"{action} as {agent}", row.agent)
        return row

    async def expire_leases(self, tenant: str, plan_id: str, step_id: str) -> bool:
        """Return an agent step whose lease ran out to ``ready``."""
        now = utcnow()
        async with self.db.tenant(tenant) as s:
            res = await s.execute(
                update(PlanStepRow)
                .where(
                    col(PlanStepRow.id) == step_key(plan_id, step_id),
                    col(PlanStepRow.state).in_(("claimed", "running")),
                    col(PlanStepRow.lease_until) < now,
                )
                .values(state="ready", agent="", lease_until=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        return bool(getattr(res, "rowcount", 0))


def lease_expired(row: PlanStepRow, now: datetime | None = None) -> bool:
    until = aware(row.lease_until)
    return until is not None and until < (now or utcnow())
