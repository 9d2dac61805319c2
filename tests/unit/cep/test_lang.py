"""The rule language: what parses to what, and bad rules as one line with the column."""

from __future__ import annotations

import pytest

from servers.cep.lang import RuleError, parse_rule


def test_every_kind_parses() -> None:
    seq = parse_rule("tool.failed -> tool.called within 5m by data.server")
    assert (seq.kind, seq.topics, seq.window, [k.source for k in seq.keys]) == (
        "sequence", ("tool.failed", "tool.called"), 300.0, ["data.server"])
    absent = parse_rule("plan.started -> not plan.finished for 10m by data.plan_id")
    assert (absent.kind, absent.window) == ("absence", 600.0)
    count = parse_rule('count(tool.failed[data.server == "x"]) >= 5 within 1m')
    assert (count.kind, count.cmp, count.threshold, count.tumbling) == ("count", ">=", 5.0, False)
    total = parse_rule("sum(tool.called, data.duration_ms) > 1e4 within 1m tumbling by data.server, tenant")
    assert (total.kind, total.tumbling, total.threshold, len(total.keys)) == ("sum", True, 10000.0, 2)
    assert parse_rule('tool.failed[data.x == "]"]').kind == "filter"  # a bracket inside a CEL string


@pytest.mark.parametrize(
    ("rule", "column", "words"),
    [
        ("a.b -> c.d withn 5m", 12, "expected 'within'"),
        ("a.b -> c.d within 5", 19, "duration"),
        ("count(a) >= x within 1m", 13, "expected a number"),
        ("a.b[data.x == ] -> c within 1m", 12, "CEL syntax error"),
        ("a.b -> not c.d", 15, "'for'"),
        ("to*l.x", 1, "whole words"),
        ("a -> b -> not c for 1m", 14, "'not' follows exactly one step"),
        ("a -> b within 1m extra", 18, "unexpected text"),
        ("sum(a) > 1 within 1m", 6, "value to sum"),
        ('a[data.x == "open] -> b within 1m', 13, "unterminated string"),
        ("", 1, "empty"),
    ],
)
def test_bad_rules_name_the_column(rule: str, column: int, words: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(rule)
    message = str(info.value.message)
    assert "\n" not in message and words in message and info.value.column == column, message
    assert message.startswith(f"rule error at column {column}:")
