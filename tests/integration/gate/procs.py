"""`vsm-mcp serve` as a real process with the echo upstream, for the gate's multi-process tests
(own process group, stopped with it: tests/process_group.py; waiting for it: tests/procs.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.process_group import process_group
from tests.procs import VSM

ROOT = Path(__file__).resolve().parents[3]
ECHO_MANIFEST = "upstreams:\n  - name: echo\n    kind: builtin\n    target: tests.integration.edge.echo_server:build\n"


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    manifest = tmp_path / "echo.yaml"
    manifest.write_text(ECHO_MANIFEST)
    return {**os.environ, "PYTHONPATH": str(ROOT), "VSM_HOME": str(tmp_path / ".vsm"), "VSM_MANIFESTS": str(manifest),
            "VSM_LOG_LEVEL": "warning", **extra}


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`vsm-mcp serve <args>`, output to ``log``; stopped on exit."""
    with log.open("wb") as out, process_group([str(VSM), "serve", *args], grace=15, env=env, stdout=out,
                                              stderr=subprocess.STDOUT) as proc:
        yield proc


def vsm(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VSM), *args], env=env, capture_output=True, text=True, timeout=120)
