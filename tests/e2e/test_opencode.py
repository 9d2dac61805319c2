"""OpenCode end to end, with the real `opencode-ai` CLI (npm, installed under .tools by make):
vsm-mcp is its MCP server (remote `/mcp` and local `vsm-mcp stdio`) and its LLM provider (the
LLM-CDN's OpenAI-compatible `/v1`), the provider backed by a scripted OpenAI-compatible model
that answers with a tool call. `vsm-mcp connect opencode` writes the configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_console import Gateway
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
        gw.cli("migrate")
        gw.cli("tenants", "create", "default")
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
