"""Start-up as an operator meets it (issue 19): bind first, then the banner; a port in use is one
line and exit 2 before anything else runs; an unreachable bus is one line naming VSM_BUS_URL;
a misspelt VSM_* variable is a warning with the closest name; ``tenants create`` works on a
fresh home (SQLite is migrated) and says to run ``vsm-mcp migrate`` on an empty PostgreSQL."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port
from tests.procs import stop

VSM = [sys.executable, "-c", "from vsm_mcp.cli import main; main()"]
ROOT = Path(__file__).resolve().parents[3]
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")



def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "VSM_EMBEDDER": "hash", **extra}


def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VSM, *args], capture_output=True, text=True, timeout=120, env=env(**extra))


def one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


def test_port_in_use_is_one_line_and_exit_2_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        proc = run("serve", "--port", str(port))
    line = one_line_error(proc, str(port))
    assert proc.returncode == 2 and "in use" in line and "VSM_PORT" in line
    assert not (tmp_path / ".vsm" / "vsm.db").exists(), "start-up ran (migrated) before finding the port taken"
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_banner_comes_after_the_port_is_bound(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*VSM, "serve", "--port", str(port)], env=env(), stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        line = ""
        before: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "serving on" in line or not line:
                break
            before.append(line)
        assert "vsm-mcp serving on" in line, line
        # uvicorn's lines in the CLI's one format, not in a second one of its own ("INFO:     …")
        assert any(" uvicorn: Application startup complete." in ln for ln in before), before
        assert all(LOG_LINE.match(ln) or ln.startswith("warning:") for ln in before), before
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200  # no retry: bound already
    finally:
        stop(proc, timeout=30)


def test_unreachable_bus_is_one_line_naming_the_setting() -> None:
    proc = run("serve", "--port", str(free_port()), VSM_BUS_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    one_line_error(proc, "VSM_BUS_URL")


def test_misspelt_variable_gets_a_warning_with_the_closest_name() -> None:
    proc = run("migrate", VSM_PROT="9000")
    assert proc.returncode == 0, proc.stderr
    assert "warning: VSM_PROT is not a vsm-mcp setting and is ignored; did you mean VSM_PORT?" in proc.stderr


def test_tenants_create_on_a_fresh_home(tmp_path: Path) -> None:
    proc = run("tenants", "create", "acme", VSM_HOME=str(tmp_path / "fresh"))
    assert proc.returncode == 0, proc.stderr
    assert "created tenant acme" in proc.stdout


@pytest.mark.postgres
def test_tenants_create_on_an_empty_postgres_says_to_migrate(pg_owner_url: str) -> None:
    proc = run("tenants", "create", "acme", "--database-url", pg_owner_url)
    one_line_error(proc, "vsm-mcp migrate")


@pytest.mark.slow
def test_audit_command_reads_the_calls_back() -> None:
    """``vsm-mcp audit`` (issue 19: nothing read episodes back)."""
    call = run("call", "storage__bucket_create", "--json", '{"name": "notes"}')
    assert call.returncode == 0, call.stderr
    import json

    proc = run("audit", "--json", "--tool", "storage__bucket_create", "--since", "1h")
    assert proc.returncode == 0, proc.stderr
    page = json.loads(proc.stdout)
    assert [e["public_name"] for e in page["episodes"]] == ["storage__bucket_create"]
    assert page["episodes"][0]["outcome"] == "ok" and len(page["episodes"][0]["trace_id"]) == 32
    table = run("audit", "--outcome", "ok")
    assert table.returncode == 0 and "storage__bucket_create" in table.stdout
    assert "no episodes match" in run("audit", "--outcome", "rate_limited").stdout
    bad = run("audit", "--since", "yesterday")
    assert bad.returncode != 0 and "since" in bad.stderr and "Traceback" not in bad.stderr
