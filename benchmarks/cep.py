"""CEP throughput and event-to-match latency: 1, 100 and 1,000 rules, incremental engine vs the
brute-force matcher, on the same random event stream.

Rules are a mix of every kind (sequence, absence, sliding count, sliding sum, tumbling count,
filter), each over its own service's topics (``svc<i>.failed`` / ``svc<i>.ok`` / ``svc<i>.call``),
with a CEL predicate and ``by data.host``; a tenth are on wildcard topics (``svc<i>.*``). Events
(random service, topic and host, exponential gaps averaging 1 ms of event time) go through
``Engine.process`` — envelope, topic index, predicates, partitions, timers — in one tenant.

* ``engine``: events/s over ``--events`` events, and per-event latency of the events that
  caused a match (the event-to-match time: the event enters ``process``, the match comes out).
* ``bus``: the same through the CEP runtime on a ``MemoryBus`` (publish → subscription →
  engine → ``cep.match.<rule>`` published and received), p50/p99 from publish to the match
  event's arrival (``--bus-events``, at 100 rules).
* ``brute``: the reference matcher (servers/cep/brute.py) re-scanning the history for every
  event, over the first ``--brute-events`` events — what the incremental engine saves.

    python benchmarks/cep.py [--json] [--events 20000] [--brute-events 300]

Goal (DESIGN.md): 100 rules ≥ 5,000 events/s and p99 event-to-match < 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers.cep.brute import brute_matches  # noqa: E402
from servers.cep.engine import Engine, envelope, seconds  # noqa: E402
from servers.cep.lang import parse_rule  # noqa: E402
from vsm_mcp.bus.events import Event  # noqa: E402

SERVICES = 200
HOSTS = [f"h{i}" for i in range(8)]


def rules(n: int, rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        s = f"svc{i % SERVICES}"
        kind = i % 6
        if i % 10 == 9:
            text = f'{s}.* -> {s}.ok[data.ms < 50] within 2s by data.host'
        elif kind == 0:
            text = f'{s}.failed[data.code >= 500] -> {s}.ok within 3s by data.host'
        elif kind == 1:
            text = f'{s}.call -> not {s}.ok for 2s by data.host'
        elif kind == 2:
            text = f'count({s}.failed[data.code != 404]) >= 3 within 5s by data.host'
        elif kind == 3:
            text = f'sum({s}.call, data.ms) > 200 within 2s by data.host'
        elif kind == 4:
            text = f'count({s}.call) >= 4 within 1s tumbling by data.host'
        else:
            text = f'{s}.failed[data.code == 503 && data.host.startsWith("h1")]'
        out.append((f"r{i}", text))
    return out


def stream(n: int, n_services: int, rng: random.Random, *, start: float = 1_700_000_000.0,
           rate: float = 1000.0) -> list[Event]:
    t = start
    out = []
    for _ in range(n):
        t += rng.expovariate(rate)
        s = rng.randrange(n_services)
        topic = rng.choice(["failed", "ok", "call", "call"])
        data = {"host": rng.choice(HOSTS), "code": rng.choice([200, 404, 500, 503]), "ms": rng.randint(1, 120)}
        out.append(Event(topic=f"svc{s}.{topic}", tenant="t", data=data, time=datetime.fromtimestamp(t, UTC)))
    return out


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def run_engine(rule_list: list[tuple[str, str]], events: list[Event]) -> dict[str, Any]:
    engine = Engine()
    for name, text in rule_list:
        engine.put("t", name, text)
    matches, lat = 0, []
    started = time.perf_counter()
    for ev in events:
        t0 = time.perf_counter()
        out = engine.process(ev)
        if out:
            lat.append(time.perf_counter() - t0)
            matches += len(out)
    elapsed = time.perf_counter() - started
    return {"events": len(events), "events_per_s": round(len(events) / elapsed), "matches": matches,
            "event_to_match_p50_ms": round(pct(lat, 50) * 1000, 4),
            "event_to_match_p99_ms": round(pct(lat, 99) * 1000, 4)}


def run_brute(rule_list: list[tuple[str, str]], events: list[Event]) -> dict[str, Any]:
    """The reference matcher in streaming use: at each event, re-derive every rule's matches over
    the history so far and report the new ones."""
    parsed = [(name, parse_rule(text)) for name, text in rule_list]
    history: list[tuple[dict[str, Any], float]] = []
    seen: list[int] = [0] * len(parsed)
    matches, lat = 0, []
    started = time.perf_counter()
    for ev in events:
        t0 = time.perf_counter()
        history.append((envelope(ev), seconds(ev.time)))
        new = 0
        for k, (name, rule) in enumerate(parsed):
            found = len(brute_matches(name, rule, history, until=history[-1][1]))
            new += found - seen[k]
            seen[k] = found
        if new:
            lat.append(time.perf_counter() - t0)
            matches += new
    elapsed = time.perf_counter() - started
    return {"events": len(events), "events_per_s": round(len(events) / elapsed, 1), "matches": matches,
            "event_to_match_p99_ms": round(pct(lat, 99) * 1000, 3)}


async def run_bus(rule_list: list[tuple[str, str]], n: int, services: int, rate: float) -> dict[str, Any]:
    """Publish at ``rate`` events/s (event time = publish time) and time each match's arrival:
    from the publish of the event that completed it, or — for timer matches (absence, tumbling)
    — from its deadline."""
    from servers.cep.runtime import CepRuntime
    from vsm_mcp.bus import MemoryBus

    bus = MemoryBus()
    runtime = CepRuntime(bus, store=None)
    for name, text in rule_list:
        runtime.engine.put("t", name, text)
    sub = await bus.subscribe(["cep.match.#"], maxsize=1_000_000)
    sent: dict[str, float] = {}
    lat: list[float] = []
    late: list[float] = []
    async with runtime.running():

        async def receive() -> None:
            async for m in sub:
                arrived = time.perf_counter()
                if m.data["timer"]:
                    late.append(time.time() - m.data["time"])
                else:
                    lat.append(arrived - sent[m.data["events"][-1]["id"]])

        reader = asyncio.create_task(receive())
        events = stream(n, services, random.Random(99), start=time.time(), rate=rate)
        started = time.perf_counter()
        wall0 = time.time()
        for ev in events:
            due = (ev.time.timestamp() - wall0)
            ahead = due - (time.perf_counter() - started)
            # Sleep when ahead of schedule, else still yield: the consumer runs between
            # publishes, as it would with the publisher in another task or process.
            await asyncio.sleep(ahead if ahead > 0.001 else 0)
            ev.time = datetime.fromtimestamp(time.time(), UTC)
            sent[ev.id] = time.perf_counter()
            await bus.publish(ev)
        await runtime.drain()
        elapsed = time.perf_counter() - started
        await asyncio.sleep(2.5)  # the last absence deadlines (2 s) and tumbling windows (1 s)
        reader.cancel()
    await sub.aclose()
    return {"events": len(events), "offered_events_per_s": rate, "achieved_events_per_s": round(len(events) / elapsed),
            "event_matches": len(lat), "timer_matches": len(late),
            "publish_to_match_p50_ms": round(pct(lat, 50) * 1000, 3),
            "publish_to_match_p99_ms": round(pct(lat, 99) * 1000, 3),
            "deadline_to_match_p50_ms": round(pct(late, 50) * 1000, 1),
            "deadline_to_match_p99_ms": round(pct(late, 99) * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--brute-events", type=int, default=300)
    ap.add_argument("--bus-events", type=int, default=10_000)
    ap.add_argument("--bus-rate", type=float, default=5000.0, help="events/s offered on the bus")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    results: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "by_rules": {}}
    for n in (1, 100, 1000):
        rule_list = rules(n, rng)
        services = max(1, min(n, SERVICES))
        events = stream(args.events, services, random.Random(args.seed + n))
        engine = run_engine(rule_list, events)
        brute = run_brute(rule_list, events[: args.brute_events]) if n <= 100 else None
        row: dict[str, Any] = {"engine": engine}
        if brute is not None:
            same = run_engine(rule_list, events[: args.brute_events])
            row["brute"] = brute
            row["engine_same_prefix"] = same
            row["speedup_vs_brute"] = round(same["events_per_s"] / max(brute["events_per_s"], 1e-9), 1)
            row["same_matches"] = same["matches"] == brute["matches"]
        if n == 100:
            row["bus"] = asyncio.run(run_bus(rule_list, args.bus_events, services, args.bus_rate))
        results["by_rules"][str(n)] = row
    r100 = results["by_rules"]["100"]
    results["goal_100_rules"] = {
        "events_per_s": r100["engine"]["events_per_s"], "p99_ms": r100["engine"]["event_to_match_p99_ms"],
        "bus_p99_ms": r100["bus"]["publish_to_match_p99_ms"],
        "met": r100["engine"]["events_per_s"] >= 5000 and r100["engine"]["event_to_match_p99_ms"] < 10
        and r100["bus"]["publish_to_match_p99_ms"] < 10,
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for n, row in results["by_rules"].items():
        e = row["engine"]
        print(f"{n:>5} rules: {e['events_per_s']:>8} events/s  p99 {e['event_to_match_p99_ms']} ms  "
              f"matches {e['matches']}" + (f"  brute {row['brute']['events_per_s']} ev/s (x{row['speedup_vs_brute']})"
                                           if "brute" in row else ""))
    print("bus (100 rules):", results["by_rules"]["100"]["bus"])
    print("goal:", results["goal_100_rules"])


if __name__ == "__main__":
    main()
