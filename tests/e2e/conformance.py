"""Helpers to run the MCP conformance suite (npm, installed by `make setup` under .tools/)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.procs import wait_listening

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT / ".tools" / "node_modules" / ".bin" / "conformance"


@dataclass
class SuiteResult:
    passed: int
    failed: int
    failing: list[str]
    output: str



def start_fixture(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.conformance.server", "--transport", "http", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, proc)
    return proc


def run_suite(url: str, output_dir: Path, timeout: float = 600) -> SuiteResult:
    proc = subprocess.run(
        [str(CONFORMANCE), "server", "--url", url, "-o", str(output_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=output_dir,
    )
    out = proc.stdout + proc.stderr
    total = re.search(r"Total:\s*(\d+) passed,\s*(\d+) failed", out)
    if total is None:
        raise RuntimeError(f"no summary in conformance output:\n{out[-3000:]}")
    failing = re.findall(r"✗\s*([\w-]+):", out)
    return SuiteResult(int(total.group(1)), int(total.group(2)), failing, out)
