"""Helpers for tests that run `vsm-mcp` as real processes (own process group, killed by it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.process_group import process_group

ROOT = Path(__file__).resolve().parents[3]
VSM = Path(sys.executable).with_name("vsm-mcp")
ECHO_MANIFEST = "upstreams:\n  - name: echo\n    kind: builtin\n    target: tests.integration.edge.echo_server:build\n"



def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    manifest = tmp_path / "echo.yaml"
    manifest.write_text(ECHO_MANIFEST)
    return {**os.environ, "PYTHONPATH": str(ROOT), "VSM_HOME": str(tmp_path / ".vsm"), "VSM_MANIFESTS": str(manifest),
            "VSM_LOG_LEVEL": "warning", **extra}


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with process_group([str(VSM), "serve", *args], grace=15, env=env, stdout=log.open("wb"),
                       stderr=subprocess.STDOUT) as proc:
        yield proc


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path, **client: object) -> None:
    async with httpx.AsyncClient(timeout=5, **client) as http:  # type: ignore[arg-type]
        for _ in range(900):  # up to 90 s on a loaded machine
            if proc.poll() is not None:
                raise AssertionError(f"vsm-mcp serve exited:\n{tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not come up:\n{tail(log)}")


def vsm(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VSM), *args], env=env, capture_output=True, text=True, timeout=120)
