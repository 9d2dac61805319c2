"""Tool search's model rerank in a fresh process: the first search right after the router starts.

Each round is a new Python process (``--root`` = the checkout it runs; give two to compare,
rounds alternate): the router in-process (``running_router``) with the default manifest's ``llm``
server and a small test server, ``VSM_TOOL_SEARCH_RERANK_MODEL`` set and the default budget
(``VSM_TOOL_SEARCH_RERANK_TIMEOUT_S`` = 2 s), the llm server pointed at the local fake of the
OpenAI API (tests/integration/llm_cdn/fake_openai.py, answering at once). Printed per round: the
router's start-up, the first search and its rerank status (``timeout`` = the budget was spent
before the model answered, first-stage order served).

    python benchmarks/rerank_cold_start.py [--rounds 5] [--root CHECKOUT ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROUND = """
import asyncio, json, logging, os, tempfile, time
os.chdir(tempfile.mkdtemp())
logging.disable(logging.WARNING)
from router.local import running_router
from router.upstreams.manifest import parse_manifest
from tests.integration.llm_cdn.fake_openai import fake_openai
from tests.integration.registry.test_rerank import QUERY, entries, models, reverse
from tests.integration.router.conftest import router_settings

async def main(base):
    settings = await asyncio.to_thread(lambda: router_settings(
        embedder="hash", llm_models=models(base), llm_retries=0, tool_search_rerank_model="rank",
        tool_search_rerank_candidates=5))
    t0 = time.perf_counter()
    async with running_router(settings, parse_manifest({"upstreams": entries()}, "bench.yaml")) as (rt, who):
        t1 = time.perf_counter()
        found = await rt.tool_search.find(who, QUERY, limit=3)
        t2 = time.perf_counter()
    print(json.dumps({"start_s": t1 - t0, "first_search_s": t2 - t1, "status": found.rerank.status}))

with fake_openai() as (base, state):
    state.answer = reverse
    asyncio.run(main(base))
"""


def one_round(root: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_")}
    env |= {"PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, "-c", ROUND], capture_output=True, text=True, env=env, cwd=root,
                         timeout=300, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--root", type=Path, action="append", help="checkout to run (repeatable; default: this one)")
    args = ap.parse_args()
    roots = [r.resolve() for r in args.root or [ROOT]]
    runs: dict[Path, list[dict[str, object]]] = {root: [] for root in roots}
    for _ in range(args.rounds):
        for root in roots:
            runs[root].append(one_round(root))
    for root, rs in runs.items():
        start = statistics.median(float(str(r["start_s"])) for r in rs)
        first = statistics.median(float(str(r["first_search_s"])) for r in rs)
        statuses = sorted({str(r["status"]) for r in rs})
        print(f"{root}: start-up median {start:.2f}s, first search median {first:.2f}s, statuses {statuses}")
        print("   per round (start, first search): "
              + ", ".join(f"{float(str(r['start_s'])):.2f}/{float(str(r['first_search_s'])):.2f}" for r in rs))


if __name__ == "__main__":
    main()
