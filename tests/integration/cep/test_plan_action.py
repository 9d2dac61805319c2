"""A rule's match starts a plan that runs: CEP → planner__plan_create/approve/run as the rule's
owner, on the durable spine (the action is a DBOS workflow on the cep.actions queue), and the
plan's step reaches its tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.planner.conftest import counter_entries, executions, planner_router
from tests.polling import eventually
from vsm_mcp.bus.events import Event

pytestmark = pytest.mark.anyio


async def test_a_match_starts_a_plan_that_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "counter.log"
    monkeypatch.setenv("COUNTER_LOG", str(log))  # the in-process counter records here
    entries = [*counter_entries(log, stdio=False), {"name": "cep", "kind": "builtin", "target": "servers.cep.server:build"}]
    async with planner_router(tmp_path / ".vsm", entries, log) as p:
        from vsm_mcp.durable import is_running

        assert is_running()  # the action goes through the workflow path
        rule = await p.call("cep__cep_rule_put", name="repair", rule="job.started -> not job.finished for 300ms by data.job",
                            action={"plan": {"name": "repair ${key[0]}", "goal": "job ${first.data.job} went silent",
                                             "steps": [{"id": "fix", "tool": "counter__work_idem",
                                                        "arguments": {"key": "fix-${first.data.job}"}}]}})
        assert rule["name"] == "repair"
        tenant = p.principal.tenant_id
        await p.runtime.ctx.bus.publish(Event(topic="job.started", tenant=tenant, data={"job": "j1"}))
        await p.runtime.ctx.bus.publish(Event(topic="job.started", tenant=tenant, data={"job": "j2"}))
        await p.runtime.ctx.bus.publish(Event(topic="job.finished", tenant=tenant, data={"job": "j2"}))

        async def plan_succeeded() -> bool:
            plans = (await p.call("planner__plan_list"))["plans"]
            return any(x["name"] == "repair j1" and x["state"] == "succeeded" for x in plans)

        await eventually(plan_succeeded, 60, "the plan started by the match to succeed")
        assert [e["key"] for e in executions(log)] == ["fix-j1"]  # j2 finished in time: no plan
        names = [x["name"] for x in (await p.call("planner__plan_list"))["plans"]]
        assert names == ["repair j1"]
