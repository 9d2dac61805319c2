"""The CEP rule language: parse a rule's text into a ``Rule`` (compiled CEL included).

Grammar (whitespace-separated; ``[ … ]`` after a topic is a CEL predicate over the event)::

    rule      := pattern [ "by" key { "," key } ]
    pattern   := step                                               (filter: every matching event)
               | step "->" step { "->" step } "within" DURATION     (sequence)
               | step "->" "not" step "for" DURATION                 (absence)
               | AGG "(" step [ "," cel ] ")" CMP NUMBER "within" DURATION [ "sliding" | "tumbling" ]
    step      := TOPIC [ "[" cel "]" ]          TOPIC: AMQP pattern (``*`` one word, ``#`` any)
    AGG       := count | sum                    CMP := >= | > | <= | < | == | !=
    DURATION  := NUMBER ( ms | s | m | h | d )  key := cel (e.g. data.upstream)

Examples: ``tool.failed -> tool.called within 5m by data.server``,
``plan.started -> not plan.finished for 10m by data.plan_id``,
``count(tool.failed[data.server == "x"]) >= 5 within 1m``,
``sum(tool.called, data.duration_ms) > 10000 within 1m tumbling by data.server``.

Meanings (docs/ARCHITECTURE.md "CEP") are implemented by servers/cep/matchers.py and, as the
reference the property tests compare against, servers/cep/brute.py. A bad rule raises
``RuleError`` — one line naming the problem and its column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from servers.cep.cel import CelSyntaxError, Expr
from vsm_mcp.bus import topic_matches
from vsm_mcp.errors import InvalidArguments

MAX_RULE_CHARS = 4000
MAX_STEPS = 8
CMPS = (">=", "<=", "==", "!=", ">", "<")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)\b")
_TOPIC = re.compile(r"[A-Za-z0-9_\-*#]+(?:\.[A-Za-z0-9_\-*#]+)*")
_WORD = re.compile(r"[A-Za-z_]+")
_WILD = re.compile(r"[*#]")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@lru_cache(maxsize=65536)
def _topic_ok(pattern: str, topic: str) -> bool:
    return bool(_WILD.search(pattern)) and topic_matches(pattern, topic)


class RuleError(InvalidArguments):
    """A rule that does not parse or compile; the message names the column (1-based)."""

    def __init__(self, message: str, column: int, source: str) -> None:
        near = source[column - 1 : column + 19].split("\n")[0]
        super().__init__(f"rule error at column {column}: {message}" + (f" (near {near!r})" if near else ""))
        self.column = column


@dataclass(frozen=True)
class Step:
    """One event the pattern waits for: a topic pattern and an optional CEL predicate."""

    topic: str
    where: Expr | None = None

    def matches(self, env: dict[str, Any]) -> bool:
        topic = env["topic"]
        if topic != self.topic and not _topic_ok(self.topic, topic):
            return False
        return self.where is None or self.where.test(env)


@dataclass(frozen=True)
class Rule:
    """A parsed rule. ``window`` is seconds (sequence span, absence wait, aggregate window)."""

    source: str
    kind: Literal["filter", "sequence", "absence", "count", "sum"]
    steps: tuple[Step, ...]
    window: float = 0.0
    tumbling: bool = False
    cmp: str = ""
    threshold: float = 0.0
    value: Expr | None = None
    keys: tuple[Expr, ...] = field(default=())

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.topic for s in self.steps))


class _Parser:
    def __init__(self, source: str) -> None:
        self.s = source
        self.i = 0

    def fail(self, message: str, at: int | None = None) -> RuleError:
        return RuleError(message, (self.i if at is None else at) + 1, self.s)

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek_word(self) -> str:
        self.ws()
        m = _WORD.match(self.s, self.i)
        return m.group(0) if m else ""

    def eat(self, text: str) -> bool:
        self.ws()
        if self.s.startswith(text, self.i):
            end = self.i + len(text)
            if text[-1].isalpha() and end < len(self.s) and (self.s[end].isalnum() or self.s[end] == "_"):
                return False
            self.i = end
            return True
        return False

    def expect(self, text: str, what: str | None = None) -> None:
        if not self.eat(text):
            raise self.fail(f"expected {what or repr(text)}")

    def at_end(self) -> bool:
        self.ws()
        return self.i >= len(self.s)

    def duration(self) -> float:
        self.ws()
        m = _DURATION.match(self.s, self.i)
        if not m:
            raise self.fail("expected a duration such as 30s, 5m, 1h, 500ms")
        value = float(m.group(1)) * _UNITS[m.group(2)]
        if value <= 0:
            raise self.fail("a duration must be greater than zero")
        self.i = m.end()
        return value

    def number(self) -> float:
        self.ws()
        m = _NUMBER.match(self.s, self.i)
        if not m:
            raise self.fail("expected a number")
        self.i = m.end()
        return float(m.group(0))

    def cel_until(self, stops: str) -> Expr:
        """CEL text up to the first of ``stops`` outside brackets and strings."""
        self.ws()
        start, depth, quote, i, opened = self.i, 0, "", self.i, 0
        while i < len(self.s):
            c = self.s[i]
            if quote:
                if c == "\\":
                    i += 2
                    continue
                if c == quote:
                    quote = ""
            elif c in "\"'":
                quote, opened = c, i
            elif c in "([{":
                depth += 1
            elif c in ")]}" and depth > 0:
                depth -= 1
            elif depth == 0 and c in stops:
                break
            i += 1
        text = self.s[start:i]
        if quote:
            raise self.fail("unterminated string in CEL expression", opened)
        if not text.strip():
            raise self.fail("expected a CEL expression", start)
        self.i = i
        try:
            return Expr(text.strip())
        except CelSyntaxError as exc:
            lead = len(text) - len(text.lstrip())
            raise self.fail(str(exc), start + lead + exc.offset) from None

    def step(self) -> Step:
        self.ws()
        m = _TOPIC.match(self.s, self.i)
        if not m or m.group(0) in ("not", "count", "sum"):
            raise self.fail("expected an event topic such as tool.failed or plan.*")
        topic = m.group(0)
        for word in topic.split("."):
            if ("*" in word or "#" in word) and word not in ("*", "#"):
                raise self.fail("'*' and '#' must be whole words of a topic (e.g. tool.*)", self.i)
        self.i = m.end()
        where = None
        if self.s.startswith("[", self.i):
            self.i += 1
            where = self.cel_until("]")
            self.expect("]", "']' closing the predicate")
        return Step(topic, where)

    def keys(self) -> tuple[Expr, ...]:
        if not self.eat("by"):
            return ()
        out = [self.cel_until(",")]
        while self.eat(","):
            out.append(self.cel_until(","))
        return tuple(out)

    def rule(self) -> Rule:
        word = self.peek_word()
        if word in ("count", "sum") and self.s[self.i + len(word) :].lstrip().startswith("("):
            return self.aggregate(word)
        steps = [self.step()]
        if self.at_end() or self.peek_word() == "by":
            return self.finish(Rule(self.s, "filter", tuple(steps)))
        while self.eat("->"):
            if self.eat("not"):
                if len(steps) != 1:
                    raise self.fail("'not' follows exactly one step: A -> not B for 10m")
                steps.append(self.step())
                self.expect("for", "'for' and a duration after the absent step")
                return self.finish(Rule(self.s, "absence", tuple(steps), window=self.duration()))
            steps.append(self.step())
            if len(steps) > MAX_STEPS:
                raise self.fail(f"a sequence has at most {MAX_STEPS} steps")
        if len(steps) == 1:
            raise self.fail("expected '->', 'by' or the end of the rule")
        self.expect("within", "'within' and a duration after the sequence")
        return self.finish(Rule(self.s, "sequence", tuple(steps), window=self.duration()))

    def aggregate(self, func: str) -> Rule:
        self.eat(func)
        self.expect("(")
        step = self.step()
        value = None
        if func == "sum":
            self.expect(",", "',' and the value to sum, e.g. sum(tool.called, data.duration_ms)")
            value = self.cel_until(")")
        self.expect(")", "')'")
        self.ws()
        cmp = next((c for c in CMPS if self.s.startswith(c, self.i)), None)
        if cmp is None:
            raise self.fail("expected a comparison (>=, >, <=, <, ==, !=)")
        self.i += len(cmp)
        threshold = self.number()
        self.expect("within", "'within' and a window duration")
        window = self.duration()
        tumbling = self.eat("tumbling")
        if not tumbling:
            self.eat("sliding")
        kind: Literal["count", "sum"] = "count" if func == "count" else "sum"
        return self.finish(Rule(self.s, kind, (step,), window, tumbling, cmp, threshold, value))

    def finish(self, rule: Rule) -> Rule:
        keys = self.keys()
        if not self.at_end():
            raise self.fail("unexpected text")
        return Rule(rule.source, rule.kind, rule.steps, rule.window, rule.tumbling, rule.cmp, rule.threshold,
                    rule.value, keys)


def parse_rule(source: str) -> Rule:
    """Parse and compile ``source``; raises ``RuleError`` (one line, with the column)."""
    if not isinstance(source, str) or not source.strip():
        raise RuleError("the rule is empty", 1, "")
    if len(source) > MAX_RULE_CHARS:
        raise RuleError(f"a rule is at most {MAX_RULE_CHARS} characters", MAX_RULE_CHARS, source)
    return _Parser(source).rule()
