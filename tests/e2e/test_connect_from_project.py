"""`vsm-mcp connect` run where users run it — the folder of their project, with no VSM_HOME —
against a real `vsm-mcp serve`: it finds the gateway's data from the note the server left
(vsm_mcp/serving_note.py), mints a key the gateway accepts, and leaves no data folder behind.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.gateway import Gateway

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path / "gateway", "http://127.0.0.1:9/v1", VSM_RUNTIME_DIR=str(tmp_path / "runtime"))
    gw.home.mkdir()
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def _connect(gw: Gateway, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in gw.env.items() if k != "VSM_HOME"}  # what a shell in the project has
    return subprocess.run([*gw.cli_argv(), "connect", *args, "--url", gw.url.replace("127.0.0.1", "localhost")],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)


def test_connect_in_a_project_folder_uses_the_running_gateways_data(gateway: Gateway, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    done = _connect(gateway, project, "mcp-json")
    assert done.returncode == 0, done.stderr
    assert str((gateway.home / ".vsm").resolve()) in done.stderr  # says where the data is, and from what
    servers = json.loads((project / ".mcp.json").read_text())["mcpServers"]
    key = servers["vsm"]["headers"]["Authorization"].removeprefix("Bearer ")
    assert servers["vsm-local"]["env"]["VSM_HOME"] == str((gateway.home / ".vsm").resolve())
    r = httpx.get(f"{gateway.url}/v1/tools", params={"limit": 1}, headers={"authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert not (project / ".vsm").exists()  # no second, empty data folder beside the project


def test_without_a_running_gateway_connect_says_what_to_do_in_one_line(gateway: Gateway, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    assert list(runtime.glob("*.json"))
    gateway.stop()
    assert not list(runtime.glob("*.json"))  # the server took its note with it
    project = tmp_path / "project"
    project.mkdir()
    done = _connect(gateway, project, "opencode")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no running gateway" in lines[0] and "vsm-mcp serve" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / ".vsm").exists() and not (project / "opencode.json").exists()
