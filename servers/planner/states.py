"""The plan and step state machines. A transition not listed here is refused with the current
state named (``Conflict``), whoever asks — a tool, the engine or an agent."""

from __future__ import annotations

from vsm_mcp.errors import Conflict

PLAN_STATES = ("draft", "approved", "running", "paused", "succeeded", "failed", "cancelled")
PLAN_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
PLAN_MOVES: dict[str, frozenset[str]] = {
    "draft": frozenset({"approved", "cancelled"}),
    "approved": frozenset({"running", "cancelled"}),
    "running": frozenset({"paused", "succeeded", "failed", "cancelled"}),
    "paused": frozenset({"running", "cancelled", "failed"}),
}

STEP_STATES = ("pending", "ready", "claimed", "running", "succeeded", "failed", "skipped", "uncertain")
STEP_TERMINAL = frozenset({"succeeded", "failed", "skipped"})
STEP_MOVES: dict[str, frozenset[str]] = {
    "pending": frozenset({"ready", "running", "skipped"}),
    "ready": frozenset({"claimed", "running", "skipped"}),
    # back to ready: an expired lease or a handoff
    "claimed": frozenset({"running", "ready", "succeeded", "failed", "skipped"}),
    # running -> running: a retry, or a re-run after a crash of an idempotent call
    "running": frozenset({"running", "ready", "succeeded", "failed", "uncertain", "skipped"}),
    "uncertain": frozenset({"running", "succeeded", "failed", "skipped"}),
}

# What each plan tool does: (the states it acts on, the state it moves to). Every pair is a move above.
PLAN_ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "approve": (("draft",), "approved"),
    "run": (("approved",), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "cancel": (("draft", "approved", "running", "paused"), "cancelled"),
}
assert all(to in PLAN_MOVES[f] for froms, to in PLAN_ACTIONS.values() for f in froms)


def refuse_plan(plan_id: str, state: str, action: str) -> Conflict:
    allowed = PLAN_ACTIONS[action][0]
    return Conflict(
        f"plan {plan_id} is {state}; {action} needs a plan that is {' or '.join(allowed)}",
        data={"plan_id": plan_id, "state": state},
    )


def refuse_step(plan_id: str, step_id: str, state: str, action: str, holder: str = "") -> Conflict:
    who = f" by {holder}" if holder and state in ("claimed", "running") else ""
    return Conflict(
        f"step {step_id!r} of plan {plan_id} is {state}{who}; cannot {action}",
        data={"plan_id": plan_id, "step_id": step_id, "state": state},
    )
