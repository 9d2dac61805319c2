"""The reference matcher: the rule meanings of matchers.py written as definitions over the
whole history, re-scanned for every decision (quadratic and more; for tests and benchmarks).

It shares nothing with the incremental matchers but the parsed rule, ``bucket_end`` and the
comparison table: no partition state, no timer heap, no topic index.
"""

from __future__ import annotations

import json
import math
from typing import Any

from servers.cep.cel import ERR
from servers.cep.lang import Rule
from servers.cep.matchers import COMPARE, Env, Match, bucket_end, number_of
from vsm_mcp.bus import topic_matches


def brute_matches(name: str, rule: Rule, events: list[tuple[Env, float]], until: float | None = None) -> list[Match]:
    """Every match of ``rule`` over ``events`` (then the clock moved to ``until``), in no set order."""
    times: list[float] = []
    for _, t in events:  # the engine's clock: event time made monotone
        times.append(max(t, times[-1]) if times else t)
    envs = [e for e, _ in events]
    keys = [_key(rule, e) for e in envs]
    fn = {"filter": _filter, "sequence": _sequence, "absence": _absence}.get(rule.kind)
    if fn is None:
        fn = _tumbling if rule.tumbling else _sliding
    return fn(name, rule, envs, times, keys, until)


def _topic_ok(rule: Rule, step: int, env: Env) -> bool:
    s = rule.steps[step]
    return topic_matches(s.topic, env["topic"]) and s.matches(env)


def _key(rule: Rule, env: Env) -> tuple[str, list[Any]] | None:
    values = [k.raw(env) for k in rule.keys]
    if any(v is ERR for v in values):
        return None
    return json.dumps(values, sort_keys=True, separators=(",", ":")), values


def _filter(name: str, rule: Rule, envs: list[Env], times: list[float], keys: list[Any], _u: float | None) -> list[Match]:
    return [Match(name, "filter", keys[j][1], times[j], [envs[j]])
            for j in range(len(envs)) if keys[j] is not None and _topic_ok(rule, 0, envs[j])]


def _sequence(name: str, rule: Rule, envs: list[Env], times: list[float], keys: list[Any],
              _u: float | None) -> list[Match]:
    n, out = len(rule.steps), []
    last_fire: dict[str, int] = {}

    def chain_end(step: int, before: int, floor: int, key: str) -> list[int] | None:
        """The chain for steps 0..step ending at the latest possible event index < before."""
        for m in range(before - 1, floor, -1):
            if keys[m] is None or keys[m][0] != key or not _topic_ok(rule, step, envs[m]):
                continue
            if step == 0:
                return [m]
            prefix = chain_end(step - 1, m, floor, key)
            if prefix is not None:
                return [*prefix, m]
        return None

    for j in range(len(envs)):
        if keys[j] is None or not _topic_ok(rule, n - 1, envs[j]):
            continue
        key = keys[j][0]
        floor = last_fire.get(key, -1)
        chain = [j] if n == 1 else None
        if n > 1:
            prefix = chain_end(n - 2, j, floor, key)
            chain = None if prefix is None else [*prefix, j]
        if chain is not None and times[j] - times[chain[0]] <= rule.window:
            last_fire[key] = j
            out.append(Match(name, "sequence", keys[j][1], times[j], [envs[i] for i in chain]))
    return out


def _absence(name: str, rule: Rule, envs: list[Env], times: list[float], keys: list[Any],
             until: float | None) -> list[Match]:
    out: list[Match] = []
    arming: dict[int, bool] = {}

    def cancelled_by(a: int, upto: int) -> bool:
        """A B in a's partition after a (up to and including ``upto``) before a's deadline."""
        deadline = times[a] + rule.window
        return any(keys[b] is not None and keys[b][0] == keys[a][0] and _topic_ok(rule, 1, envs[b])
                   and times[b] < deadline for b in range(a + 1, upto + 1))

    def is_arming(j: int) -> bool:
        if j in arming:
            return arming[j]
        ok = keys[j] is not None and _topic_ok(rule, 0, envs[j])
        if ok:
            prev = [a for a in range(j) if keys[a] is not None and keys[a][0] == keys[j][0] and is_arming(a)]
            if prev:
                a = prev[-1]
                still_armed = times[j] < times[a] + rule.window and not cancelled_by(a, j)
                ok = not still_armed
        arming[j] = ok
        return ok

    clock = max(times[-1] if times else -math.inf, until if until is not None else -math.inf)
    for a in range(len(envs)):
        if not is_arming(a):
            continue
        deadline = times[a] + rule.window
        if clock >= deadline and not cancelled_by(a, len(envs) - 1):
            out.append(Match(name, "absence", keys[a][1], deadline, [envs[a]]))
    return out


def _agg(rule: Rule, values: list[float]) -> float:
    return float(len(values)) if rule.kind == "count" else math.fsum(values)


def _value(rule: Rule, env: Env) -> float | None:
    if rule.kind == "count":
        return 1.0
    assert rule.value is not None
    return number_of(rule.value.raw(env))


def _sliding(name: str, rule: Rule, envs: list[Env], times: list[float], keys: list[Any],
             _u: float | None) -> list[Match]:
    out: list[Match] = []
    last_fire: dict[str, int] = {}
    cmp = COMPARE[rule.cmp]
    usable = [keys[j] is not None and _topic_ok(rule, 0, envs[j]) and _value(rule, envs[j]) is not None
              for j in range(len(envs))]
    for j in range(len(envs)):
        if not usable[j]:
            continue
        key = keys[j][0]
        low = times[j] - rule.window
        members = [i for i in range(last_fire.get(key, -1) + 1, j + 1)
                   if usable[i] and keys[i][0] == key and times[i] >= low]
        agg = _agg(rule, [v for v in (_value(rule, envs[i]) for i in members) if v is not None])
        if cmp(agg, rule.threshold):
            last_fire[key] = j
            first, last = envs[members[0]], envs[members[-1]]
            out.append(Match(name, rule.kind, keys[j][1], times[j], [first] if first is last else [first, last], agg))
    return out


def _tumbling(name: str, rule: Rule, envs: list[Env], times: list[float], keys: list[Any],
              until: float | None) -> list[Match]:
    groups: dict[tuple[str, float], list[int]] = {}
    for j in range(len(envs)):
        if keys[j] is None or not _topic_ok(rule, 0, envs[j]) or _value(rule, envs[j]) is None:
            continue
        groups.setdefault((keys[j][0], bucket_end(times[j], rule.window)), []).append(j)
    clock = max(times[-1] if times else -math.inf, until if until is not None else -math.inf)
    out: list[Match] = []
    for (_, end), members in groups.items():
        if clock < end:
            continue
        agg = _agg(rule, [v for v in (_value(rule, envs[i]) for i in members) if v is not None])
        if COMPARE[rule.cmp](agg, rule.threshold):
            first, last = envs[members[0]], envs[members[-1]]
            m = Match(name, rule.kind, keys[members[0]][1], end, [first] if first is last else [first, last], agg)
            out.append(m)
    return out
