"""Topic matching: the table every bus implementation must agree with, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsm_mcp.bus import check_patterns, topic_matches
from vsm_mcp.errors import InvalidArguments

# (pattern, topic, matches) — shared with tests/integration/bus (run against RabbitMQ too).
TABLE: list[tuple[str, str, bool]] = [
    ("a.b", "a.b", True),
    ("a.b", "a.b.c", False),
    ("a.b", "a", False),
    ("a.*", "a.b", True),
    ("a.*", "a", False),
    ("a.*", "a.b.c", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*.*", "a.b", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#.c", "c", True),  # '#' at the start matches zero words
    ("#.c", "a.b.c", True),
    ("#.c", "a.c.d", False),
    ("a.#.d", "a.d", True),  # '#' in the middle
    ("a.#.d", "a.b.c.d", True),
    ("a.#.d", "a.b.c", False),
    ("a.#", "a", True),  # '#' at the end
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("#.b.#", "b", True),
    ("#.b.#", "a.b.c", True),
    ("#.b.#", "a.c", False),
    ("a.#.#", "a", True),  # consecutive '#' (regression: checked against RabbitMQ)
    ("#.#", "a", True),
    ("a.#.#.b", "a.b", True),
    ("a.*.b", "a..b", True),  # empty words are words
    ("a..b", "a..b", True),
    ("a..b", "a.x.b", False),
    ("a.*", "a.", True),
    ("*.a", ".a", True),
    ("tool.*", "tool.called", True),
    ("tool.*", "tools.called", False),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), TABLE)
def test_table(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


def _reference(pattern: str, topic: str) -> bool:
    """An independent definition of AMQP topic semantics: dynamic programming over words.

    (A regex translation used here before mishandled consecutive '#': it said 'a.#.#' does not
    match 'a', which RabbitMQ and our matcher both accept.)
    """
    pat, words = pattern.split("."), topic.split(".")
    # ok[i][j]: the first i pattern words match the first j topic words.
    ok = [[False] * (len(words) + 1) for _ in range(len(pat) + 1)]
    ok[0][0] = True
    for i in range(1, len(pat) + 1):
        for j in range(len(words) + 1):
            if pat[i - 1] == "#":
                ok[i][j] = ok[i - 1][j] or (j > 0 and ok[i][j - 1])
            elif j > 0:
                ok[i][j] = ok[i - 1][j - 1] and pat[i - 1] in ("*", words[j - 1])
    return ok[-1][-1]


words = st.sampled_from(["a", "b", "c", ""])
topics = st.lists(words, min_size=1, max_size=5).map(".".join)
patterns = st.lists(st.sampled_from(["a", "b", "*", "#", ""]), min_size=1, max_size=5).map(".".join)


@given(patterns, topics)
def test_matches_reference(pattern: str, topic: str) -> None:
    assert topic_matches(pattern, topic) == _reference(pattern, topic)


@given(topics)
def test_every_topic_matches_itself_and_hash(topic: str) -> None:
    assert topic_matches(topic, topic)
    assert topic_matches("#", topic)


@pytest.mark.parametrize("bad", ["a.b*", "#a", "tool.**", ""])
def test_bad_patterns_are_named(bad: str) -> None:
    with pytest.raises(InvalidArguments) as info:
        check_patterns([bad] if bad else [])
    assert (bad in info.value.message) if bad else ("at least one" in info.value.message)
