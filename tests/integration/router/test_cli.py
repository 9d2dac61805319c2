"""`vsm-mcp call` runs one call in-process through the pipeline; errors are one line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.router.conftest import UPSTREAM


def test_call_prints_the_result_and_fails_cleanly(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"upstreams:\n  - {{name: s, kind: stdio, command: {json.dumps(sys.executable)}, "
        f"args: [{json.dumps(str(UPSTREAM))}, --name, s]}}\n",
        encoding="utf-8",
    )
    cmd = [sys.executable, "-m", "vsm_mcp.cli", "call", "--manifest", str(manifest)]
    ok = subprocess.run([*cmd, "s__add", "--json", '{"a": 40, "b": 2}'], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["structuredContent"] == {"result": 42}
    bad = subprocess.run([*cmd, "s__nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown tool 's__nope'" in bad.stderr and "Traceback" not in bad.stderr
    wrong = subprocess.run([*cmd, "s__add", "--json", '{"a": "x", "b": 1}'], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1 and "invalid argument 'a'" in wrong.stderr


# `vsm-mcp` with the upstream registry's poll slowed where the shutdown's cancellation used to land:
# the pool's reset (rollback) of the connection the poll's read gives back. The poll runs all the
# time (VSM_UPSTREAMS_POLL_S tiny), so a read is in flight whenever the CLI exits.
SLOW_POLL = """
import asyncio, contextvars, sys
from sqlalchemy import event
from sqlalchemy.pool import Pool
from sqlalchemy.util import await_only
from router.upstreams import store

polling = contextvars.ContextVar("polling", default=False)
read = store.RegistryStore.fingerprint

async def slow_read(self):
    polling.set(True)  # the poll task's context only
    return await read(self)

@event.listens_for(Pool, "reset")
def slow_reset(dbapi_connection, record, reset_state):
    if polling.get():
        await_only(asyncio.sleep(0.2))

store.RegistryStore.fingerprint = slow_read
sys.argv = ["vsm-mcp", *sys.argv[1:]]
from vsm_mcp.cli import main
main()
"""


def test_a_call_that_fails_is_one_line_on_stderr_and_nothing_else(tmp_path: Path) -> None:
    """The shutdown after a failed call cancelled the router's tasks while the registry poll was
    giving its connection back: SQLAlchemy's pool logged the cancelled rollback as a second line
    ("Exception during reset or similar"). The runtime now stops the poll before that."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"upstreams:\n  - {{name: s, kind: stdio, command: {json.dumps(sys.executable)}, "
        f"args: [{json.dumps(str(UPSTREAM))}, --name, s]}}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "VSM_UPSTREAMS_POLL_S": "0.000001"}
    cmd = [sys.executable, "-c", SLOW_POLL, "call", "--manifest", str(manifest), "s__nope"]
    for _ in range(2):
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert run.returncode == 1
        assert run.stderr.splitlines() == ["error: unknown tool 's__nope'"], run.stderr
