"""Two agents on one vsm-mcp share the LLM cache: through the router's OpenAI-compatible edge,
the second agent's identical request is answered from the first one's miss; the checked-in trace
is reproducible from its generator and replays with no false hit (benchmarks/llm_cache_trace.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from router.app import create_app
from tests.asgi_server import serve_asgi
from tests.integration.llm_cdn.fake_openai import FakeState
from vsm_mcp import migrate
from vsm_mcp.config import load_settings

pytestmark = pytest.mark.anyio
Fakes = tuple[str, FakeState, str, FakeState]
BENCH = Path(__file__).resolve().parents[3] / "benchmarks"


def module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


async def test_second_agent_identical_request_is_a_hit(fakes: Fakes, tmp_path: Path) -> None:
    bench = module("llm_cache_trace")
    base, state, _, _ = fakes
    models = {"models": [{"name": "m", "target": "openai/m", "api_base": base, "api_key": "k"}]}
    settings = load_settings(home=tmp_path / ".vsm", llm_models=json.dumps(models), rate_limit=0)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    body = {"model": "m", "temperature": 0, "messages": [
        {"role": "system", "content": "You are the build agent."}, {"role": "user", "content": "Please fix cache.py."}]}
    async with serve_asgi(create_app(settings, specs=bench.llm_specs(tmp_path))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as agent_a, \
                httpx.AsyncClient(base_url=url, timeout=60) as agent_b:
            first = await agent_a.post("/v1/chat/completions", json=body)
            second = await agent_b.post("/v1/chat/completions", json=body)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-vsm-cache"] == "miss" and second.headers["x-vsm-cache"] == "hit"
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert state.calls["m"] == 1


def test_checked_in_trace_is_reproducible(tmp_path: Path) -> None:
    gen = module("make_llm_trace")
    checked_in = BENCH / "data" / "llm_trace" / "trace.jsonl"
    header = json.loads(checked_in.read_text(encoding="utf-8").splitlines()[0])
    out = tmp_path / "trace.jsonl"
    sys_argv = sys.argv
    sys.argv = ["make_llm_trace", "--out", str(out), "--seed", str(header["seed"]),
                "--sessions", str(header["sessions_per_agent"])]
    try:
        gen.main()
    finally:
        sys.argv = sys_argv
    assert out.read_bytes() == checked_in.read_bytes()


async def test_trace_slice_replays_without_false_hits(fakes: Fakes, tmp_path: Path) -> None:
    bench = module("llm_cache_trace")
    header, rows = bench.load_trace()
    part = [r for r in rows if r["seq"] < 25]  # each agent's first 25 requests, replayed concurrently
    base, state, _, _ = fakes
    out = await bench.run(part, base, state, tmp_path, embedder="hash", model=header["model"])
    assert out["requests"] == len(part)
    assert out["false_hits"] == 0 and out["unexplained_cached_answers"] == 0
    assert out["provider_calls"] == out["misses"] + out["bypass"]
    assert out["exact_hits"] > 0


OPENCODE_TRACE = BENCH / "data" / "llm_trace" / "opencode.jsonl"


def test_opencode_trace_carries_its_provenance() -> None:
    bench = module("llm_cache_trace")
    header, rows = bench.load_trace(OPENCODE_TRACE)
    assert header["generator"] == "benchmarks/record_opencode_trace.py" and header["opencode"]
    assert header["user_agent"].startswith("opencode/") and header["how"] and header["cache_mode"] == "all"
    assert {r["agent"] for r in rows} == set(header["scenario"]) == {"a", "b"}
    assert {r["task"] for r in rows} == {t for sessions in header["scenario"].values() for _, t in sessions}
    for r in rows:  # every reference resolved: the replayed requests are OpenCode's whole bodies
        assert all(isinstance(m.get("content"), str | list | type(None)) and "ref" not in m for m in r["request"]["messages"])
        assert isinstance(r["request"].get("tools", []), list)


def test_opencode_trace_exact_keys_never_join_different_intents() -> None:
    """On real OpenCode traffic the exact key is never shared by requests that need different
    answers (e.g. the same task in another checkout: only the working directory differs)."""
    from servers.llm_cdn.fingerprint import fingerprint

    bench = module("llm_cache_trace")
    _, rows = bench.load_trace(OPENCODE_TRACE)
    intents: dict[str, set[str]] = {}
    for r in rows:
        intents.setdefault(fingerprint(r["request"]), set()).add(r["intent"])
    assert all(len(v) == 1 for v in intents.values())
    assert len(intents) < len(rows)  # and it does join some: the trace has repeats to serve
    checkouts = {r["checkout"] for r in rows if r["task"] == "list-python" and r["label"] == "first_turn"}
    assert checkouts == {"repo", "repo-b"}


async def test_opencode_trace_replays_without_false_hits(fakes: Fakes, tmp_path: Path) -> None:
    bench = module("llm_cache_trace")
    header, rows = bench.load_trace(OPENCODE_TRACE)
    base, state, _, _ = fakes
    out = await bench.run(rows, base, state, tmp_path, embedder="hash", model=header["model"], cache_mode="all")
    assert out["requests"] == len(rows) and out["bypass"] == 0
    assert out["false_hits"] == 0 and out["unexplained_cached_answers"] == 0
    assert out["provider_calls"] == out["misses"]
    assert out["exact_hits"] > 0 and out["cross_agent_hits"] > 0


def test_recorder_model_titles_then_calls_the_plan_then_answers() -> None:
    rec = module("record_opencode_trace")
    script = rec.Script("", {})
    task = rec.TASKS["find-retries"]
    system = {"role": "system", "content": "You are opencode.\n<env>\n  Working directory: /w/repo\n</env>"}
    user = {"role": "user", "content": f'"{task.text}"'}
    tools = [{"type": "function", "function": {"name": n}} for n in ("grep", "read", "glob")]
    title = rec.respond(script, {"messages": [{"role": "system", "content": rec.TITLE_PROMPT + "."}, user]})
    assert title["content"].lower().startswith("find where retries")
    history: list[dict[str, object]] = [system, user]
    for name, args in task.steps:
        msg = rec.respond(script, {"messages": history, "tools": tools})
        call = msg["tool_calls"][0]
        assert call["function"]["name"] == name
        assert json.loads(call["function"]["arguments"]) == json.loads(json.dumps(args).replace("{cwd}", "/w/repo"))
        history += [msg, {"role": "tool", "tool_call_id": call["id"], "content": f"output of {name}"}]
    final = rec.respond(script, {"messages": history, "tools": tools})
    assert final["content"].startswith(task.answer) and "output of read" in final["content"]
    assert rec.respond(script, {"messages": [system, {"role": "user", "content": "something else"}]})["content"]
