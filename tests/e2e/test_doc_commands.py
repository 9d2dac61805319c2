"""Every ``vsm-mcp`` command shown in README.md and docs/*.md runs as shipped, on a fresh VSM_HOME.

Found by a new user (issue 19): the README's ``policy explain hours.policy`` failed (the file was
not shipped) and ``tenants create`` on a fresh home said ``no such table: tenants``. Commands
that serve until stopped (serve, stdio, server, worker) and ``connect``, which needs a gateway
serving (tests/e2e/test_connect_from_project.py, test_opencode.py run it against one), are left
to their own tests; every other one is run, each fenced block on a fresh VSM_HOME of its own and its commands in order
(``keys create --tenant acme`` needs the ``tenants create acme`` before it), from a scratch
directory that sees the repository's examples/ and manifests/.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LONG_RUNNING = {"serve", "stdio", "server", "worker"}
NEEDS_A_GATEWAY = {"connect"}
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_CMD = re.compile(r"^(?:\$ )?(?:\.venv/bin/)?vsm-mcp (.+)$")


def doc_commands() -> list[tuple[int, str, list[str]]]:
    """(block number, label, argv) of every command to run."""
    out = []
    blocks = [b for doc in DOCS for b in ((doc, b) for b in _FENCE.findall(doc.read_text()))]
    for n, (doc, block) in enumerate(blocks):
        for line in block.splitlines():
            m = _CMD.match(line.strip())
            if not m:
                continue
            argv = shlex.split(m.group(1), comments=True)
            if argv and argv[0] not in LONG_RUNNING | NEEDS_A_GATEWAY:
                out.append((n, f"{doc.name}: vsm-mcp {m.group(1).split('  #')[0].strip()}", argv))
    return out


COMMANDS = doc_commands()


def test_the_docs_show_commands() -> None:
    names = " ".join(argv[0] for _, _, argv in COMMANDS)
    assert "tenants" in names and "policy" in names and "call" in names


@pytest.mark.slow
def test_documented_commands_run_on_a_fresh_home(tmp_path: Path) -> None:
    for sub in ("examples", "manifests"):
        (tmp_path / sub).symlink_to(ROOT / sub)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    failures = []
    for block, label, argv in COMMANDS:
        env["VSM_HOME"] = str(tmp_path / f".vsm-{block}")
        proc = subprocess.run(
            [sys.executable, "-c", "from vsm_mcp.cli import main; main()", *argv],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            failures.append(f"{label}\n  exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-400:]}")
    assert not failures, "\n".join(failures)
