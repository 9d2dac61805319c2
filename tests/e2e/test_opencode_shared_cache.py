"""Two real OpenCode processes on one vsm-mcp share the LLM cache (issue 24).

Each agent is its own OpenCode: its own configuration (`vsm-mcp connect opencode` run in its own
folder, so its own key; OpenCode reads it through ``OPENCODE_CONFIG``) and its own session store
(``XDG_DATA_HOME``). The model is reached through the LLM-CDN's OpenAI-compatible ``/v1``, backed
by the scripted model server, whose request list is the provider's bill.

The gateway runs with ``VSM_LLM_CACHE_MODE=all``: OpenCode 1.18 sends no ``temperature``, so the
default mode (temperature 0 or a seed) would pass every request through uncached.

Agent a works in ``repo`` first and fills the cache. Then, at the same time, agent b works in the
same ``repo`` and agent c in a second checkout ``repo2``, on the same task. OpenCode's requests
carry no per-session field in the body (the session id travels in headers), so b's requests are
byte-identical to a's and must all be answered from the cache; c shares the title request (no
working directory in it), but its agent turns name ``repo2`` as the working directory (and the
model's answers name files by absolute path), so they must reach the provider.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_console import Gateway
from tests.e2e.test_opencode import OPENCODE, opencode_env
from tests.scripted_model import Script, scripted_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not OPENCODE.exists(), reason="opencode-ai not installed (make setup installs it under .tools)"),
    pytest.mark.timeout(600),
]

TASK = "how much is stored in the bucket named shared?"


def _agent(gw: Gateway, home: Path, name: str) -> dict[str, str]:
    """The environment of one OpenCode process with its own config (and key) and session store."""
    folder = home / f"agent-{name}"
    folder.mkdir()
    out = subprocess.run([*gw.cli_argv(), "connect", "opencode", "--url", gw.url, "--scopes", "tools:call,storage:*,llm:call"],
                         cwd=folder, env=gw.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    config = json.loads((folder / "opencode.json").read_text())
    config["mcp"]["vsm-local"]["enabled"] = False  # the remote entry carries the call; a local router is slow to start
    (folder / "opencode.json").write_text(json.dumps(config))
    return opencode_env(OPENCODE_CONFIG=str(folder / "opencode.json"), XDG_DATA_HOME=str(folder / "data"))


def _start(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([str(OPENCODE), "run", TASK], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _finish(proc: subprocess.Popen[str]) -> str:
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    transcript = stdout + stderr
    assert "bucket_usage" in transcript and "done:" in transcript and '"shared"' in transcript, transcript[-3000:]
    return transcript


def _stats(gw: Gateway, key: str) -> dict[str, Any]:
    r = httpx.post(f"{gw.url}/v1/tools/llm__llm_cache_stats/call", headers={"authorization": f"Bearer {key}"},
                   json={"arguments": {}}, timeout=30)
    assert r.status_code == 200 and not r.json().get("isError"), r.text
    stats: dict[str, Any] = json.loads(r.json()["content"][0]["text"])
    return stats


def _lookups(s: dict[str, Any]) -> int:
    return int(s["hits"]["exact"] + s["hits"]["semantic"] + s["misses"] + s["shared"] + s["bypass"])


def _working_dir(request: dict[str, Any]) -> str | None:
    system = next((m["content"] for m in request["messages"] if m.get("role") == "system"), "")
    line = next((ln for ln in str(system).splitlines() if "Working directory:" in ln), None)
    return line.split("Working directory:", 1)[1].strip() if line else None


def test_two_opencode_processes_share_the_llm_cache(tmp_path: Path) -> None:
    with scripted_model("bucket_usage", {"bucket": "shared"}) as (model_url, script):
        gw = Gateway(tmp_path, model_url)
        gw.env["VSM_LLM_CACHE_MODE"] = "all"
        gw.cli("migrate")
        gw.cli("tenants", "create", "default")
        admin = gw.cli("keys", "create", "--tenant", "default", "--scopes", "*").splitlines()[-1].strip()
        gw.start()
        try:
            _run_agents(gw, admin, script, tmp_path)
        finally:
            gw.stop()


def _run_agents(gw: Gateway, admin: str, script: Script, home: Path) -> None:
    r = httpx.post(f"{gw.url}/v1/tools/storage__bucket_create/call", headers={"authorization": f"Bearer {admin}"},
                   json={"arguments": {"name": "shared"}}, timeout=30)
    assert r.status_code == 200 and not r.json().get("isError"), r.text
    repo, repo2 = home / "repo", home / "repo2"
    for checkout in (repo, repo2):
        checkout.mkdir()
        (checkout / "README.md").write_text("# shared\n")
    envs = {name: _agent(gw, home, name) for name in "abc"}

    _finish(_start(envs["a"], repo))
    filled = len(script.requests)
    after_a = _stats(gw, admin)
    assert filled >= 2 and after_a["misses"] == filled == _lookups(after_a)  # a title request and agent turns
    assert any(not q.get("tools") for q in script.requests) and all(_working_dir(q) in (None, str(repo))
                                                                     for q in script.requests)

    b, c = _start(envs["b"], repo), _start(envs["c"], repo2)
    _finish(b)
    _finish(c)
    after = _stats(gw, admin)
    new = script.requests[filled:]
    # Only c's agent turns reached the provider: every one of b's requests, and c's title
    # request, was answered from what a's run stored.
    assert new and all(_working_dir(q) == str(repo2) for q in new), [_working_dir(q) for q in new]
    lookups = _lookups(after) - _lookups(after_a)
    assert after["misses"] - after_a["misses"] == len(new)
    hits = after["hits"]["exact"] - after_a["hits"]["exact"]
    assert hits == lookups - len(new) and hits >= filled + 1, after  # b's requests + c's title
    assert after["shared"] == after_a["shared"] and after["hits"]["semantic"] == 0
