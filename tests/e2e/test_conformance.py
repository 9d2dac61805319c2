"""MCP conformance suite (@modelcontextprotocol/conformance 0.1.13, active server scenarios)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conformance import CONFORMANCE, free_port, run_suite, start_fixture

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
