"""The CEP engine: rules per tenant, indexed by topic; one clock and one timer heap.

``process(event)`` runs an event through the matchers of its tenant whose rules name its
topic — exact topics are a dict lookup, wildcard patterns are resolved once per distinct topic
and cached — so 1,000 rules cost what the few that care about a topic cost.

The clock is event time made monotone: an event's time is ``max(its time, clock)``, and
before an event at time t is matched every timer due at or before t fires (deadlines are
half-open: a B at exactly an absence deadline is too late). ``advance(now)`` moves the clock
with the wall clock between events, so a deadline fires without waiting for the next event.

An event a rule itself published (``cep.match.<rule>``) is not fed back to that rule.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Iterable
from datetime import UTC, datetime

from servers.cep.lang import Rule, parse_rule
from servers.cep.matchers import Env, Match, Matcher, make_matcher
from vsm_mcp.bus import topic_matches
from vsm_mcp.bus.events import Event

SWEEP_EVERY = 4096  # events between sweeps of partitions that can no longer fire


def rule_version(source: str) -> str:
    """Identifies a rule's text: persisted timers of another version are dropped."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def envelope(event: Event) -> Env:
    """The CEL activation of an event: its envelope as JSON (time as RFC 3339 text)."""
    return {"id": event.id, "topic": event.topic, "tenant": event.tenant, "type": event.type,
            "time": event.time.isoformat(), "data": event.data, "trace_id": event.trace_id}


def seconds(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class _TenantRules:
    """One tenant's matchers and its topic index."""

    def __init__(self) -> None:
        self.matchers: dict[str, Matcher] = {}
        self._exact: dict[str, list[Matcher]] = {}
        self._wild: list[tuple[str, Matcher]] = []
        self._cache: dict[str, tuple[Matcher, ...]] = {}

    def add(self, m: Matcher) -> None:
        old = self.matchers.get(m.name)
        if old is not None:
            self.remove(old)
        self.matchers[m.name] = m
        for topic in m.rule.topics:
            if "*" in topic or "#" in topic:
                self._wild.append((topic, m))
            else:
                self._exact.setdefault(topic, []).append(m)
        self._cache.clear()

    def remove(self, m: Matcher) -> None:
        if self.matchers.get(m.name) is m:
            del self.matchers[m.name]
        for topic in m.rule.topics:
            if "*" in topic or "#" in topic:
                self._wild = [(p, x) for p, x in self._wild if x is not m]
            elif topic in self._exact:
                self._exact[topic] = [x for x in self._exact[topic] if x is not m]
                if not self._exact[topic]:
                    del self._exact[topic]
        self._cache.clear()

    def for_topic(self, topic: str) -> tuple[Matcher, ...]:
        hit = self._cache.get(topic)
        if hit is None:
            found = list(self._exact.get(topic, ()))
            found += [m for pattern, m in self._wild if topic_matches(pattern, topic)]
            hit = tuple(dict.fromkeys(found))  # a rule naming the topic twice runs once
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[topic] = hit
        return hit


class Engine:
    """Matchers of every tenant; ``process`` / ``advance`` return the matches they caused."""

    def __init__(self) -> None:
        self.tenants: dict[str, _TenantRules] = {}
        self.clock = 0.0
        self._heap: list[tuple[float, int, Matcher, str]] = []
        self._seq = itertools.count()
        self._events = 0
        self.dirty: dict[tuple[int, str], tuple[Matcher, str]] = {}
        self.track_dirty = False  # set by the store: remember timer changes for write-behind

    # --- Timers protocol (the matchers call these) --------------------------------------
    def arm(self, matcher: Matcher, key: str, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), matcher, key))

    def changed(self, matcher: Matcher, key: str) -> None:
        if self.track_dirty:
            self.dirty[(id(matcher), key)] = (matcher, key)

    # --- rules -------------------------------------------------------------------------
    def put(self, tenant: str, name: str, rule: Rule | str) -> Matcher:
        """Install (or replace) rule ``name`` for ``tenant``; a replaced rule's state is dropped."""
        parsed = parse_rule(rule) if isinstance(rule, str) else rule
        rules = self.tenants.setdefault(tenant, _TenantRules())
        matcher = make_matcher(name, parsed, self)
        matcher.tenant, matcher.version = tenant, rule_version(parsed.source)
        rules.add(matcher)
        return matcher

    def delete(self, tenant: str, name: str) -> bool:
        rules = self.tenants.get(tenant)
        m = None if rules is None else rules.matchers.get(name)
        if rules is None or m is None:
            return False
        rules.remove(m)
        return True

    def matcher(self, tenant: str, name: str) -> Matcher | None:
        rules = self.tenants.get(tenant)
        return None if rules is None else rules.matchers.get(name)

    def _live(self, m: Matcher) -> bool:
        rules = self.tenants.get(m.tenant)
        return rules is not None and rules.matchers.get(m.name) is m

    # --- events and time ----------------------------------------------------------------
    def advance(self, now: float) -> list[Match]:
        """Move the clock to ``now`` (never back) and fire every timer due by then."""
        if now > self.clock:
            self.clock = now
        out: list[Match] = []
        heap = self._heap
        while heap and heap[0][0] <= self.clock:
            deadline, _, matcher, key = heapq.heappop(heap)
            if self._live(matcher):
                m = matcher.on_timer(key, deadline)
                if m is not None:
                    m.tenant, m.by_timer = matcher.tenant, True
                    out.append(m)
        return out

    def process(self, event: Event) -> list[Match]:
        """Match one event of ``event.tenant``."""
        return self.process_env(event.tenant, envelope(event), seconds(event.time))

    def process_env(self, tenant: str, env: Env, t: float) -> list[Match]:
        out = self.advance(t) if self._heap and self._heap[0][0] <= max(t, self.clock) else []
        if t > self.clock:
            self.clock = t
        rules = self.tenants.get(tenant)
        if rules is None:
            return out
        topic = env["topic"]
        own = env["data"].get("rule") if topic.startswith("cep.match.") else None
        for matcher in rules.for_topic(topic):
            if matcher.name == own:
                continue  # a rule never consumes its own matches (no feedback loop)
            m = matcher.on_event(env, self.clock)
            if m is not None:
                m.tenant = tenant
                out.append(m)
        self._events += 1
        if self._events % SWEEP_EVERY == 0:
            self.sweep()
        return out

    def sweep(self) -> None:
        for rules in self.tenants.values():
            for m in rules.matchers.values():
                m.sweep(self.clock)

    def next_deadline(self) -> float | None:
        """The earliest armed deadline (stale entries included: waking early is harmless)."""
        return self._heap[0][0] if self._heap else None

    def all_matchers(self) -> Iterable[Matcher]:
        for rules in self.tenants.values():
            yield from rules.matchers.values()


def run_rule(rule: Rule | str, events: Iterable[tuple[Env, float]], *, until: float | None = None,
             name: str = "test") -> list[Match]:
    """Run one rule over ``(envelope, time)`` pairs on a fresh engine (``cep_rule_test``, the
    benchmarks, the property tests); ``until`` moves the clock on afterwards so due timers fire."""
    engine = Engine()
    engine.put("t", name, rule)
    out: list[Match] = []
    for env, t in events:
        out += engine.process_env("t", env, t)
    if until is not None:
        out += engine.advance(until)
    return out


__all__ = ["Engine", "Match", "envelope", "rule_version", "run_rule", "seconds"]
