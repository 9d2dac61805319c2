"""Policy decision cost: the compiled WebAssembly module (wasmtime, fuel-metered, host-side
input encoding included) vs the reference Python interpreter, same 20-rule policy, same inputs,
same run. Goal (issue 10): p99 < 50 µs per decision and ≥ 5× the interpreter's throughput.

    .venv/bin/python benchmarks/policy_eval.py [--n 20000] [--json]

The last line with --json is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vsm_mcp.policy import Decision, PolicyRuntime, compile_policy, normalize  # noqa: E402

POLICY = """
policy "bench"
default deny "closed by default"
input { bucket: string, key: string, size: number, force: bool, labels: set, owner: string }

deny after_hours "deletes only 09-17 UTC" when tool.name == "storage_delete" and (context.hour < 9 or context.hour >= 17)
deny weekend "no deletes on weekends" when tool.name == "storage_delete" and context.weekday > 5
deny huge "uploads over 100 MB" when tool.name == "storage_put" and input.size > 100000000
deny prod_force "no force in prod" when input.bucket == "prod" and input.force
deny secrets "secret labels" when input.labels intersects ["secret", "pii", "restricted"]
deny traversal "path traversal" when input.key contains ".." or input.key starts_with "/"
deny exe "no executables" when input.key ends_with ".exe" or input.key ends_with ".dll"
deny burst "too many calls" when context.rate > 600
deny tmp_tenant "sandbox tenant is read-only" when principal.tenant_name == "sandbox" and not tool.annotations.readOnlyHint
deny foreign "owner mismatch" when has(input.owner) and input.owner != principal.key_id and not ("admin" in principal.scopes)
deny llm_night "llm only by day" when tool.server == "llm" and context.hour < 6
deny many_labels "too many labels" when count(input.labels) > 16
allow admins "admins" when "admin" in principal.scopes
allow readers "read-only tools" when tool.annotations.readOnlyHint
allow storage_writers "storage writers" when tool.server == "storage" and principal.scopes intersects ["storage", "storage:write", "storage:*"]
allow search "search for everyone" when tool.server == "search"
allow planner "planner" when tool.server == "planner" and "planner" in principal.scopes
allow own_bucket "own bucket" when input.bucket starts_with principal.tenant_name
allow small_puts "small puts" when tool.name == "storage_put" and input.size <= 1024
allow mcp_source "local mcp" when context.source == "mcp" and tool.tags contains "safe"
"""

SERVERS = ["storage", "search", "llm", "planner", "cms"]
TOOLS = ["storage_put", "storage_get", "storage_delete", "search_query", "llm_complete"]


VIOLATIONS: list[tuple[str, dict[str, Any]]] = [
    ("input", {"key": "../etc/passwd"}),
    ("input", {"labels": ["pii"]}),
    ("input", {"bucket": "prod", "force": True}),
    ("context", {"rate": 900}),
    ("principal", {"tenant_name": "sandbox"}),
]


def make_inputs(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Traffic as a router sees it: mostly ordinary calls that every deny rule has to clear
    (the expensive case for an evaluator), about one in ten breaking some rule."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        bad = rng.random() < 0.1
        doc: dict[str, Any] = {
            "principal": {
                "tenant": "t-1",
                "tenant_name": "acme",
                "key_id": "k1",
                "scopes": ["tools:call", rng.choice(["storage", "storage:write", "search"]), "planner"],
            },
            "tool": {
                "server": rng.choice(SERVERS),
                "name": rng.choice(TOOLS),
                "tags": rng.sample(["safe", "storage:write", "llm"], 1),
                "annotations": {"readOnlyHint": rng.random() < 0.4},
            },
            "input": {
                "bucket": rng.choice(["acme-data", "acme-logs", "shared"]),
                "key": rng.choice(["a/b.txt", "reports/2026/q4.pdf", "img/logo.png"]),
                "size": rng.choice([10, 512, 2048, 5_000_000]),
                "force": False,
                "labels": rng.sample(["public", "draft", "team", "q4"], rng.randint(0, 3)),
                "owner": "k1",
            },
            "context": {"time": 1_764_151_200 + rng.randint(0, 6 * 3600), "rate": rng.randint(0, 300),
                        "source": "mcp"},
        }
        if bad:
            root, change = rng.choice(VIOLATIONS)
            doc[root].update(change)
        docs.append(normalize(doc))
    return docs


def latencies(fn: Callable[[dict[str, Any]], Decision], docs: list[dict[str, Any]]) -> list[float]:
    """Per-decision wall time in µs (timer overhead included, the same for both engines)."""
    out: list[float] = []
    clock = time.perf_counter_ns
    for d in docs:
        t0 = clock()
        fn(d)
        out.append((clock() - t0) / 1000.0)
    return out


def throughput(fn: Callable[[dict[str, Any]], Decision], docs: list[dict[str, Any]]) -> float:
    """Decisions per second over a tight loop (no per-call timer)."""
    t0 = time.perf_counter()
    for d in docs:
        fn(d)
    return len(docs) / (time.perf_counter() - t0)


def compare(engines: dict[str, Callable[[dict[str, Any]], Decision]], docs: list[dict[str, Any]], rounds: int
            ) -> dict[str, dict[str, float]]:
    """Engines run in alternating rounds so both see the same machine load (it is shared and
    noisy); throughput is the best round (the least disturbed), latency pools every round."""
    for fn in engines.values():
        for d in docs[:500]:
            fn(d)  # warm up: caches, instance pool
    samples: dict[str, list[float]] = {k: [] for k in engines}
    rates: dict[str, list[float]] = {k: [] for k in engines}
    chunk = max(1, len(docs) // rounds)
    gc.disable()
    try:
        for r in range(rounds):
            part = docs[r * chunk:(r + 1) * chunk]
            for name, fn in engines.items():
                samples[name] += latencies(fn, part)
                rates[name].append(throughput(fn, part))
    finally:
        gc.enable()
    out = {}
    for name in engines:
        xs = sorted(samples[name])
        out[name] = {
            "decisions_per_s": round(max(rates[name])),
            "decisions_per_s_median_round": round(statistics.median(rates[name])),
            "p50_us": round(xs[len(xs) // 2], 2),
            "p99_us": round(xs[int(len(xs) * 0.99) - 1], 2),
        }
    return out


async def authorize_costs(policy_wasm: bytes, n: int) -> dict[str, float]:
    """The router's authorize step (PolicyAuthorizer on a real SQLite database): per call, for a
    tenant with no policies and for one with the 20-rule policy (building the facts included)."""
    import asyncio
    import tempfile

    from vsm_mcp import migrate
    from vsm_mcp.auth import Principal
    from vsm_mcp.config import load_settings
    from vsm_mcp.db import Database
    from vsm_mcp.errors import PolicyDenied
    from vsm_mcp.hooks import CallInfo
    from vsm_mcp.policy.authorizer import PolicyAuthorizer
    from vsm_mcp.policy.store import PolicyStore
    from vsm_mcp.tenants import create_tenant

    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(home=Path(home))
        await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
        db = Database(settings)
        try:
            empty = (await create_tenant(db, "empty")).id
            ruled = (await create_tenant(db, "ruled")).id
            await PolicyStore(db).put(ruled, "bench", source=POLICY, wasm=policy_wasm, meta={})
            auth = PolicyAuthorizer(db, PolicyRuntime(), clock=lambda: 1_764_151_200.0 + 3600)
            args = {"bucket": "acme-data", "key": "a/b.txt", "size": 512, "labels": ["team"], "owner": "k1"}
            out: dict[str, float] = {}
            for label, tenant in (("no_policies", empty), ("policy_20_rules", ruled)):
                call = CallInfo(Principal(tenant, frozenset({"storage", "tools:call"}), "k1", "acme"),
                                "storage__storage_get", "storage", "storage_get", args, ("safe",),
                                {"readOnlyHint": True})
                samples = []
                for i in range(n + 200):
                    t0 = time.perf_counter_ns()
                    try:
                        await auth.authorize(call)
                    except PolicyDenied:
                        pass
                    if i >= 200:  # the first call loads the tenant's policies from the database
                        samples.append((time.perf_counter_ns() - t0) / 1000.0)
                samples.sort()
                out[f"authorize_{label}_p50_us"] = round(samples[len(samples) // 2], 2)
                out[f"authorize_{label}_p99_us"] = round(samples[int(len(samples) * 0.99) - 1], 2)
            return out
        finally:
            await db.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=40_000, help="decisions per engine")
    ap.add_argument("--rounds", type=int, default=20, help="alternating rounds per engine")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()

    policy = compile_policy(POLICY)
    assert len(policy.doc.rules) == 20
    loaded = PolicyRuntime().load(policy.wasm)
    public = PolicyRuntime(fast_calls=False).load(policy.wasm)  # wasmtime-py's public Func.__call__ only
    interp = policy.interpreter()
    docs = make_inputs(args.n)
    mismatches = sum(loaded.evaluate(d) != interp.decide(d) for d in docs[:2000])
    denies = sum(not interp.decide(d).allowed for d in docs[:2000])

    res = compare({"wasm": loaded.evaluate, "wasm_public_api": public.evaluate, "interpreter": interp.decide},
                  docs, args.rounds)
    wasm, ref, pub = res["wasm"], res["interpreter"], res["wasm_public_api"]
    speedup = wasm["decisions_per_s"] / ref["decisions_per_s"]
    speedup_p50 = ref["p50_us"] / wasm["p50_us"]
    import asyncio

    authorize = asyncio.run(authorize_costs(policy.wasm, min(args.n, 5000)))
    result = {
        "benchmark": "policy_eval",
        "rules": 20,
        "decisions": args.n,
        "deny_share": round(denies / min(2000, len(docs)), 3),
        "mismatches_in_2000": mismatches,
        "wasm": wasm,
        "interpreter": ref,
        "wasm_public_api": pub,
        # What the private ctypes call (vsm_mcp/policy/fastcall.py) buys over wasmtime-py's public API.
        "private_call_gain_p50_us": round(pub["p50_us"] - wasm["p50_us"], 2),
        "private_call_speedup_p50_x": round(pub["p50_us"] / wasm["p50_us"], 2),
        "speedup_x": round(speedup, 2),
        "speedup_p50_x": round(speedup_p50, 2),
        **authorize,
        "goal_p99_under_50us": wasm["p99_us"] < 50.0,
        # Per-decision cost ratio (p50) is the steadier figure on a shared machine; the
        # throughput ratio swings with the load the other processes put on the two cores.
        "goal_5x_interpreter_p50": speedup_p50 >= 5.0,
        "goal_5x_interpreter_throughput": speedup >= 5.0,
    }
    if not args.json:
        print(f"20-rule policy, {args.n} decisions each (encoding included for WASM)")
        for name in ("wasm", "wasm_public_api", "interpreter"):
            r = result[name]
            print(f"  {name:12} {r['decisions_per_s']:>9,}/s  p50 {r['p50_us']:7.2f} µs  p99 {r['p99_us']:7.2f} µs")
        print(f"  speedup {speedup:.2f}x throughput, {speedup_p50:.2f}x at p50   mismatches {mismatches}")
        print(f"  authorize step: {authorize}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
