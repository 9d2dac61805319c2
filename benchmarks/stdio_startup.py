"""``vsm-mcp stdio`` start-up as an MCP client meets it: spawn → ``initialize`` answered → ``tools/list``.

A client (an editor, an agent) launches ``vsm-mcp stdio`` and waits for its ``initialize`` answer
before it shows any tool, so the wall time from spawn to that answer is what a user waits for.
Each round spawns a fresh process with the default manifests (every built-in server) on one
already-migrated home, through the mcp SDK's stdio client, and reads the child's CPU time
(user + system, from /proc) once ``initialize`` is answered.

    python benchmarks/stdio_startup.py [--rounds 7] [--root CHECKOUT ...] [--json]

``--root`` names the checkout the child runs (PYTHONPATH; default: this one); given twice (say, a
``git archive`` of the previous commit and this checkout) the rounds alternate between them, so
both are measured under the same load. Each checkout has its own home; its first round migrates
that home and compiles the bytecode, and is not counted. Figures are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]


def child_cpu_s() -> float:
    """CPU seconds of our live child processes (the stdio server; its own children included)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


async def one_round(root: Path, home: Path) -> dict[str, float]:
    home.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_") and k != "PYTHONDONTWRITEBYTECODE"}
    # Bytecode cached in a prefix of our own: an installed package has its .pyc files, and a
    # checkout run with PYTHONDONTWRITEBYTECODE would compile ~240 modules on every start.
    env |= {"VSM_HOME": str(home), "PYTHONPATH": str(root), "PYTHONPYCACHEPREFIX": str(home.parent / "pycache"),
            "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "vsm_mcp.cli", "stdio"], env=env,
                                   cwd=str(home.parent))
    t0 = time.perf_counter()
    async with Client(params, mode="legacy") as client:  # spawn + initialize + initialized
        t_init = time.perf_counter()
        cpu = child_cpu_s()
        tools = (await client.list_tools()).tools
        t_list = time.perf_counter()
    return {"initialize_s": t_init - t0, "tools_list_s": t_list - t0, "child_cpu_at_initialize_s": cpu,
            "tools": float(len(tools))}


async def main(rounds: int, roots: list[Path]) -> dict[str, Any]:
    runs: dict[Path, list[dict[str, float]]] = {root: [] for root in roots}
    with tempfile.TemporaryDirectory() as tmp:
        homes = {root: Path(tmp) / str(i) / ".vsm" for i, root in enumerate(roots)}
        for root in roots:  # migrates the fresh home, compiles: not what a returning user waits for
            await one_round(root, homes[root])
        for _ in range(rounds):
            for root in roots:
                runs[root].append(await one_round(root, homes[root]))
    return {"rounds": rounds, "load_avg_1m_at_end": os.getloadavg()[0], "checkouts": [
        {"root": str(root), "median": {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]},
         "min": {k: round(min(r[k] for r in rs), 3) for k in rs[0]},
         "initialize_s": [round(r["initialize_s"], 3) for r in rs]}
        for root, rs in runs.items()]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--root", type=Path, action="append", help="checkout to run (repeatable; default: this one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = anyio.run(main, args.rounds, [r.resolve() for r in args.root or [ROOT]])
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for c in result["checkouts"]:
            m = c["median"]
            print(f"{c['root']}: median of {args.rounds}: initialize answered {m['initialize_s']:.3f}s after spawn "
                  f"(child CPU {m['child_cpu_at_initialize_s']:.3f}s), tools/list {m['tools_list_s']:.3f}s "
                  f"({int(m['tools'])} tools)")
