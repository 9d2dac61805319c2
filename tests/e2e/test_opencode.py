"""OpenCode end to end, with the real `opencode-ai` CLI (npm, installed under .tools by make):
vsm-mcp is its MCP server (remote `/mcp` and local `vsm-mcp stdio`) and its LLM provider (the
LLM-CDN's OpenAI-compatible `/v1`), the provider backed by a scripted OpenAI-compatible model
that answers with a tool call. `vsm-mcp connect opencode` writes the configuration. The last test
runs three OpenCode processes on the one gateway to show they share the LLM cache (issue 24).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.gateway import Gateway
from tests.scripted_model import Script, scripted_model

ROOT = Path(__file__).resolve().parents[2]
OPENCODE = ROOT / ".tools" / "node_modules" / ".bin" / "opencode"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not OPENCODE.exists(), reason="opencode-ai not installed (make setup installs it under .tools)"),
    pytest.mark.timeout(600),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str, Script, Path]]:
    home = tmp_path_factory.mktemp("opencode")
    with scripted_model("bucket_create", {"name": "from-opencode"}) as (model_url, script):
        gw = Gateway(home, model_url)
        # OpenCode 1.18 sends no temperature: under the default mode (temperature 0 or a seed) the
        # LLM-CDN would pass every request through, and agents could not share answers.
        gw.env["VSM_LLM_CACHE_MODE"] = "all"
        gw.cli("migrate")
        key = gw.cli("keys", "create", "--tenant", "default", "--scopes", "*").splitlines()[-1].strip()
        gw.start()
        project = home / "project"
        project.mkdir()
        try:
            yield gw, key, script, project
        finally:
            gw.stop()


def opencode_env(**extra: str) -> dict[str, str]:
    """A clean environment for OpenCode: with the test process's (PYTHONPATH, pytest's variables …)
    OpenCode 1.18 silently dropped the configured provider and fell back to its own default model."""
    return {**{k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TERM") if k in os.environ}, **extra}


def _opencode(project: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OPENCODE), *args], cwd=project, env=opencode_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_connect_writes_a_config_every_vsm_entry_of_which_connects(stack: tuple[Gateway, str, Script, Path]) -> None:
    gw, _, _, project = stack
    (project / "opencode.json").write_text(json.dumps({"theme": "opencode", "mcp": {"other": {"type": "remote", "url": "http://127.0.0.1:9/mcp", "enabled": False}}}))
    scopes = "tools:call,storage:*,llm:call,events:read,search:read"
    out = subprocess.run([*gw.cli_argv(), "connect", "opencode", "--url", gw.url, "--scopes", scopes], cwd=project, env=gw.env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    config = json.loads((project / "opencode.json").read_text())
    assert config["theme"] == "opencode" and "other" in config["mcp"]  # merged, not replaced
    assert set(config["mcp"]) >= {"vsm", "vsm-local"}
    assert config["provider"]["vsm"]["options"]["baseURL"] == f"{gw.url}/v1"
    assert config["model"] == "vsm/scripted"
    key_file = project / ".vsm-api-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text() not in (project / "opencode.json").read_text()  # referenced, not inlined
    listed = _opencode(project, "mcp", "list")
    text = listed.stdout + listed.stderr
    for name in ("vsm", "vsm-local"):
        line = next((ln for ln in text.splitlines() if f" {name} " in ln + " "), "")
        assert "connected" in line, text


def test_opencode_run_calls_a_vsm_tool_with_a_model_served_through_the_llm_cdn(
    stack: tuple[Gateway, str, Script, Path],
) -> None:
    gw, key, script, project = stack
    config = json.loads((project / "opencode.json").read_text())
    config["mcp"]["vsm-local"]["enabled"] = False  # the remote entry carries this call
    (project / "opencode.json").write_text(json.dumps(config))
    before = len(script.requests)
    run = _opencode(project, "run", "create a storage bucket named from-opencode")
    assert run.returncode == 0, run.stderr[-3000:]
    transcript = run.stdout + run.stderr
    assert "storage__bucket_create" in transcript
    assert "done:" in transcript and "from-opencode" in transcript  # the tool's result reached the transcript
    # The model was reached through vsm-mcp (the LLM-CDN forwarded OpenCode's requests) and was
    # offered vsm's tools by their MCP names.
    with_tools = [r for r in script.requests[before:] if r.get("tools")]  # not the title request
    offered = {t["function"]["name"] for t in with_tools[0]["tools"]}
    assert any(n.endswith("storage__bucket_create") for n in offered)
    r = httpx.post(f"{gw.url}/v1/tools/storage__bucket_usage/call", headers={"authorization": f"Bearer {key}"},
                   json={"arguments": {"bucket": "from-opencode"}})
    assert r.status_code == 200 and not r.json().get("isError"), r.text


def test_opencode_through_the_local_stdio_entry(stack: tuple[Gateway, str, Script, Path]) -> None:
    gw, key, script, project = stack
    config = json.loads((project / "opencode.json").read_text())
    config["mcp"]["vsm"]["enabled"] = False
    config["mcp"]["vsm-local"]["enabled"] = True
    (project / "opencode.json").write_text(json.dumps(config))
    script.arguments = {"name": "from-stdio"}
    run = _opencode(project, "run", "create a storage bucket named from-stdio")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "from-stdio" in run.stdout + run.stderr
    r = httpx.post(f"{gw.url}/v1/tools/storage__bucket_usage/call", headers={"authorization": f"Bearer {key}"},
                   json={"arguments": {"bucket": "from-stdio"}})
    assert r.status_code == 200 and not r.json().get("isError"), r.text


# --- two OpenCode processes share the LLM cache (issue 24) ---------------------------------------

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


def test_two_opencode_processes_share_the_llm_cache(stack: tuple[Gateway, str, Script, Path], tmp_path: Path) -> None:
    """Two OpenCode processes, each with its own configuration and key (`vsm-mcp connect opencode`
    in its own folder, read through ``OPENCODE_CONFIG``) and its own session store
    (``XDG_DATA_HOME``), share the LLM-CDN's cache; the scripted model's request list is the bill.

    Agent a works in ``repo`` and fills the cache. Then, at the same time, b works in the same
    ``repo`` and c in a second checkout ``repo2``, on the same task. OpenCode's bodies carry no
    per-session field (the session id travels in headers), so b's requests are byte-identical to
    a's and must all be answered from the cache; c shares the title request, but its agent turns
    name ``repo2`` as the working directory (and the model's answers name absolute paths), so
    they must reach the provider.
    """
    gw, admin, script, _ = stack
    saved = script.tool_match, script.arguments
    script.tool_match, script.arguments = "bucket_usage", {"bucket": "shared"}
    try:
        _share(gw, admin, script, tmp_path)
    finally:
        script.tool_match, script.arguments = saved


def _share(gw: Gateway, admin: str, script: Script, home: Path) -> None:
    r = httpx.post(f"{gw.url}/v1/tools/storage__bucket_create/call", headers={"authorization": f"Bearer {admin}"},
                   json={"arguments": {"name": "shared"}}, timeout=30)
    assert r.status_code == 200 and not r.json().get("isError"), r.text
    repo, repo2 = home / "repo", home / "repo2"
    for checkout in (repo, repo2):
        checkout.mkdir()
        (checkout / "README.md").write_text("# shared\n")
    envs = {name: _agent(gw, home, name) for name in "abc"}

    before, start = _stats(gw, admin), len(script.requests)
    _finish(_start(envs["a"], repo))
    filled = len(script.requests)
    after_a = _stats(gw, admin)
    a_sent = script.requests[start:]
    assert len(a_sent) >= 2 and after_a["misses"] - before["misses"] == len(a_sent)  # a title request and agent turns
    assert _lookups(after_a) - _lookups(before) == len(a_sent)
    assert any(not q.get("tools") for q in a_sent) and all(_working_dir(q) in (None, str(repo)) for q in a_sent)

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
    assert hits == lookups - len(new) and hits >= len(a_sent) + 1, after  # b's requests + c's title
    assert after["shared"] == after_a["shared"] and after["hits"]["semantic"] == before["hits"]["semantic"]
