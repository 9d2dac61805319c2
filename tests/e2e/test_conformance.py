"""MCP conformance suite (@modelcontextprotocol/conformance 0.1.13, active server scenarios)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ports import free_port

from .conformance import CONFORMANCE, run_suite, start_fixture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CONFORMANCE.exists(), reason="conformance suite not installed (needs npm; `make setup`)"),
]

EXPECTED_CHECKS = 40


@pytest.mark.timeout(600)
def test_fixture_passes_every_check_directly(tmp_path: Path) -> None:
    port = free_port()
    fixture = start_fixture(port)
    try:
        result = run_suite(f"http://127.0.0.1:{port}/mcp", tmp_path)
    finally:
        fixture.terminate()
        fixture.wait(timeout=10)
    print(f"conformance direct: {result.passed} passed, {result.failed} failed")
    assert result.failed == 0, result.failing
    assert result.passed == EXPECTED_CHECKS


def _wait_ready(base: str, names: list[str], timeout: float = 90) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{base}/readyz", timeout=5).json()
            ups = body.get("checks", {}).get("upstreams", {})
            if all(ups.get(n, {}).get("ok") for n in names):
                return
            last = str(ups)
        except (httpx.HTTPError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise TimeoutError(f"router upstreams {names} not ready: {last}")


@pytest.mark.timeout(900)
def test_same_checks_pass_through_the_router(tmp_path: Path) -> None:
    """The fixture mounted over HTTP and over stdio (shared pool, and per_client), reached at
    /mcp/<server>: nothing lost."""
    import os
    import subprocess
    import sys

    from tests.procs import wait_listening

    from .conformance import ROOT

    fixture_port, router_port = free_port(), free_port()
    manifest = tmp_path / "conformance.yaml"
    manifest.write_text(
        "upstreams:\n"
        f"  - {{name: conf_http, kind: http, url: 'http://127.0.0.1:{fixture_port}/mcp'}}\n"
        f"  - {{name: conf_stdio, kind: stdio, command: '{sys.executable}',"
        f" args: ['-m', 'examples.conformance.server', '--transport', 'stdio'], cwd: '{ROOT}'}}\n"
        f"  - {{name: conf_stdio_pc, kind: stdio, session_mode: per_client, command: '{sys.executable}',"
        f" args: ['-m', 'examples.conformance.server', '--transport', 'stdio'], cwd: '{ROOT}'}}\n"
    )
    fixture = start_fixture(fixture_port)
    env = {
        **os.environ,
        "VSM_HOME": str(tmp_path / ".vsm"),
        "VSM_PORT": str(router_port),
        "VSM_MANIFESTS": str(manifest),
        "VSM_LOG_LEVEL": "warning",
    }
    router = subprocess.Popen(
        [sys.executable, "-m", "vsm_mcp.cli", "serve"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(router_port, router, timeout=120)
        base = f"http://127.0.0.1:{router_port}"
        _wait_ready(base, ["conf_http", "conf_stdio", "conf_stdio_pc"])
        results = {}
        # stdio both ways: sessions sharing the pool (the default) and a process per session
        for name in ("conf_http", "conf_stdio", "conf_stdio_pc"):
            out = tmp_path / name
            out.mkdir()
            results[name] = run_suite(f"{base}/mcp/{name}", out)
            print(f"conformance through /mcp/{name}: {results[name].passed} passed, {results[name].failed} failed")
    finally:
        router.terminate()
        fixture.terminate()
        router.wait(timeout=30)
        fixture.wait(timeout=10)
    for name, result in results.items():
        assert result.failed == 0, (name, result.failing)
        assert result.passed == EXPECTED_CHECKS, name
