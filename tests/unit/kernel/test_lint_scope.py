"""`make lint` type-checks every part of the tree strictly, servers included (issue 19: servers/ had
72 `mypy --strict` errors because lint only looked at vsm_mcp)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_make_lint_runs_mypy_over_kernel_router_and_servers() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    mypy = [line for line in lint.splitlines() if re.search(r"\bmypy\b", line)]
    assert mypy, "make lint runs no mypy"
    targets = set(mypy[0].split("mypy", 1)[1].split())
    assert {"vsm_mcp", "router", "servers"} <= targets, mypy[0]
