"""Incremental matchers: one per rule, state per partition key, no re-scan of history.

Meanings (every kind is per partition key; times are the engine's clock, see engine.py):

* **filter** ``A``: every event that matches A.
* **sequence** ``A -> B -> … within W``: fires at the event that completes a chain of events
  matching the steps in order (each strictly after the previous) whose span is ≤ W. The
  chain reported is the *latest* one (for each step the most recent event that continues a
  chain) — it has the latest start, so if any chain fits in W this one does. A match consumes:
  events up to the firing one never take part in another match of that partition.
* **absence** ``A -> not B for D``: an A arms a deadline t(A) + D unless one is armed; a B
  before the deadline disarms (a B that is also an A then re-arms, so ``x -> not x for D``
  fires after D of silence); at the deadline the rule fires with the arming event.
* **count / sum sliding** ``within W``: at each matching event, the aggregate of the matching
  events since the partition's last match whose time is ≥ t - W; fires when the comparison
  holds, and the match consumes the window.
* **count / sum tumbling**: windows [kW, (k+1)W); evaluated once, when the clock reaches the
  window's end; fires when the comparison holds.
  ``sum`` adds the value expression's number (an event whose value is not a number is skipped).

Timers (absence deadlines, tumbling window ends) are kept by the engine; ``timer_state``
returns what must survive a restart and ``restore`` takes it back.
"""

from __future__ import annotations

import json
import math
import operator
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from servers.cep.cel import ERR
from servers.cep.lang import Rule

Env = dict[str, Any]

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}


@dataclass
class Match:
    """One firing of a rule."""

    rule: str
    kind: str
    key: list[Any]
    time: float
    events: list[Env]
    value: float | None = None
    tenant: str = ""
    by_timer: bool = False  # fired by the clock reaching a deadline, not by an event

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "kind": self.kind, "key": self.key, "time": self.time,
                "events": self.events, "value": self.value, "timer": self.by_timer}


class Timers(Protocol):
    def arm(self, matcher: Matcher, key: str, deadline: float) -> None:
        """Call ``matcher.on_timer(key, deadline)`` once the clock reaches ``deadline``."""

    def changed(self, matcher: Matcher, key: str) -> None:
        """``matcher.timer_state(key)`` changed (the store persists it, write-behind)."""


def bucket_end(t: float, window: float) -> float:
    """End of the tumbling window holding ``t`` (float-safe: the end is always > t)."""
    end = (math.floor(t / window) + 1) * window
    while end <= t:
        end += window
    return end


def exact_add(partials: list[float], x: float) -> None:
    """Add ``x`` to a sum kept as exact non-overlapping partials (Shewchuk, as in ``math.fsum``):
    ``math.fsum(partials)`` is then the correctly rounded sum, and adding ``-x`` removes ``x``
    exactly — a sliding sum without drift, equal to ``fsum`` of the window however it was built."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


def number_of(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


@dataclass(eq=False)  # identity: matchers are dict keys and heap entries
class Matcher:
    """Base: the rule, its name and a timers sink; ``on_event`` gets events already known to
    carry one of the rule's topics (the engine's index), at clock time ``t``."""

    name: str
    rule: Rule
    timers: Timers
    tenant: str = ""
    version: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    def partition(self, env: Env) -> tuple[str, list[Any]] | None:
        if not self.rule.keys:
            return "", []
        values = [k.raw(env) for k in self.rule.keys]
        if any(v is ERR for v in values):
            return None  # an event without the key takes no part in a partitioned rule
        if len(values) == 1 and type(values[0]) is str:
            return "s" + values[0], values  # the common case, without a JSON dump per event
        return "j" + json.dumps(values, sort_keys=True, separators=(",", ":")), values

    def on_event(self, env: Env, t: float) -> Match | None:
        raise NotImplementedError

    def on_timer(self, key: str, deadline: float) -> Match | None:
        return None

    def timer_state(self, key: str) -> dict[str, Any] | None:
        """What a restart needs to re-arm ``key``'s timer (None: nothing armed)."""
        return None

    def restore(self, key: str, state: dict[str, Any]) -> None:
        return None

    def sweep(self, now: float) -> None:
        """Drop partitions that can no longer fire (bounded memory)."""
        return None


class FilterMatcher(Matcher):
    def on_event(self, env: Env, t: float) -> Match | None:
        if not self.rule.steps[0].matches(env):
            return None
        part = self.partition(env)
        if part is None:
            return None
        return Match(self.name, "filter", part[1], t, [env])


class SequenceMatcher(Matcher):
    """state[key] = (values, best) with best[i] = latest chain ((t, env), …) covering steps 0..i."""

    def on_event(self, env: Env, t: float) -> Match | None:
        steps = self.rule.steps
        hits = [i for i, s in enumerate(steps) if s.matches(env)]
        if not hits:
            return None
        part = self.partition(env)
        if part is None:
            return None
        key, values = part
        st = self.state.get(key)
        n, window = len(steps), self.rule.window
        for i in reversed(hits):
            if i == 0:
                cand: tuple[tuple[float, Env], ...] = ((t, env),)
            else:
                prev = st[1][i - 1] if st is not None else None
                if prev is None or t - prev[0][0] > window:
                    continue
                cand = (*prev, (t, env))
            if i == n - 1:
                self.state.pop(key, None)  # the match consumes the partition's events
                return Match(self.name, "sequence", values, t, [e for _, e in cand])
            if st is None:
                best: list[tuple[tuple[float, Env], ...] | None] = [None] * (n - 1)
                st = self.state[key] = (values, best)
            st[1][i] = cand
        return None

    def sweep(self, now: float) -> None:
        window = self.rule.window
        dead = [k for k, (_, best) in self.state.items()
                if all(c is None or now - c[0][0] > window for c in best)]
        for k in dead:
            del self.state[k]


class AbsenceMatcher(Matcher):
    """state[key] = (values, deadline, arming env)."""

    def on_event(self, env: Env, t: float) -> Match | None:
        first, absent = self.rule.steps
        is_b, is_a = absent.matches(env), first.matches(env)
        if not (is_a or is_b):
            return None
        part = self.partition(env)
        if part is None:
            return None
        key, values = part
        if is_b and key in self.state:
            del self.state[key]  # the awaited event came in time (the engine fired due deadlines first)
            self.timers.changed(self, key)
        if is_a and key not in self.state:
            deadline = t + self.rule.window
            self.state[key] = (values, deadline, env)
            self.timers.arm(self, key, deadline)
            self.timers.changed(self, key)
        return None

    def on_timer(self, key: str, deadline: float) -> Match | None:
        st = self.state.get(key)
        if st is None or st[1] != deadline:
            return None  # disarmed (or re-armed) since: a stale heap entry
        del self.state[key]
        self.timers.changed(self, key)
        return Match(self.name, "absence", st[0], deadline, [st[2]])

    def timer_state(self, key: str) -> dict[str, Any] | None:
        st = self.state.get(key)
        return None if st is None else {"values": st[0], "deadline": st[1], "event": st[2]}

    def restore(self, key: str, state: dict[str, Any]) -> None:
        self.state[key] = (state["values"], float(state["deadline"]), state["event"])
        self.timers.arm(self, key, float(state["deadline"]))


class _Aggregate(Matcher):
    def value_of(self, env: Env) -> float | None:
        if self.rule.kind == "count":
            return 1.0
        assert self.rule.value is not None
        return number_of(self.rule.value.raw(env))

    def fires(self, agg: float) -> bool:
        return COMPARE[self.rule.cmp](agg, self.rule.threshold)

    def admit(self, env: Env) -> tuple[str, list[Any], float] | None:
        """(partition key, key values, the event's value) of an event the rule counts, else None."""
        if not self.rule.steps[0].matches(env):
            return None
        v = self.value_of(env)
        if v is None:
            return None
        part = self.partition(env)
        if part is None:
            return None
        return part[0], part[1], v


class SlidingMatcher(_Aggregate):
    """state[key] = (values, deque of (t, value, env) since the partition's last match, exact sum)."""

    def on_event(self, env: Env, t: float) -> Match | None:
        taken = self.admit(env)
        if taken is None:
            return None
        key, values, v = taken
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = (values, deque(), [])
        win: deque[tuple[float, float, Env]] = st[1]
        partials: list[float] = st[2]
        win.append((t, v, env))
        exact_add(partials, v)
        low = t - self.rule.window
        while win[0][0] < low:
            exact_add(partials, -win.popleft()[1])
        agg = float(len(win)) if self.rule.kind == "count" else math.fsum(partials)
        if not self.fires(agg):
            return None
        del self.state[key]
        return Match(self.name, self.rule.kind, values, t, _ends(win[0][2], win[-1][2]), agg)

    def sweep(self, now: float) -> None:
        low = now - self.rule.window
        for k in [k for k, (_, win, _p) in self.state.items() if win[-1][0] < low]:
            del self.state[k]


class TumblingMatcher(_Aggregate):
    """state[key] = [values, window end, count, exact-sum partials, first env, last env]."""

    def on_event(self, env: Env, t: float) -> Match | None:
        taken = self.admit(env)
        if taken is None:
            return None
        key, values, v = taken
        st = self.state.get(key)
        if st is None:
            end = bucket_end(t, self.rule.window)
            self.state[key] = [values, end, 1, [v], env, env]
            self.timers.arm(self, key, end)
        else:
            st[2] += 1
            exact_add(st[3], v)
            st[5] = env
        self.timers.changed(self, key)
        return None

    def on_timer(self, key: str, deadline: float) -> Match | None:
        st = self.state.get(key)
        if st is None or st[1] != deadline:
            return None
        del self.state[key]
        self.timers.changed(self, key)
        agg = float(st[2]) if self.rule.kind == "count" else math.fsum(st[3])
        if not self.fires(agg):
            return None
        return Match(self.name, self.rule.kind, st[0], deadline, _ends(st[4], st[5]), agg)

    def timer_state(self, key: str) -> dict[str, Any] | None:
        st = self.state.get(key)
        if st is None:
            return None
        return {"values": st[0], "deadline": st[1], "count": st[2], "partials": st[3], "first": st[4],
                "last": st[5]}

    def restore(self, key: str, state: dict[str, Any]) -> None:
        self.state[key] = [state["values"], float(state["deadline"]), int(state["count"]),
                           [float(x) for x in state["partials"]], state["first"], state["last"]]
        self.timers.arm(self, key, float(state["deadline"]))


def _ends(first: Env, last: Env) -> list[Env]:
    return [first] if first is last else [first, last]


def make_matcher(name: str, rule: Rule, timers: Timers) -> Matcher:
    """The incremental matcher for ``rule``."""
    if rule.kind == "filter":
        return FilterMatcher(name, rule, timers)
    if rule.kind == "sequence":
        return SequenceMatcher(name, rule, timers)
    if rule.kind == "absence":
        return AbsenceMatcher(name, rule, timers)
    return (TumblingMatcher if rule.tumbling else SlidingMatcher)(name, rule, timers)
