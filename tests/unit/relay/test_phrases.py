"""Key phrases without a model (servers/relay/phrases.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from servers.relay.phrases import STOP, key_phrases


def test_multiword_phrases_rank_first() -> None:
    text = "The European Central Bank raised interest rates. Analysts expect the central bank to pause."
    got = key_phrases(text, 3)
    assert got == ["european central bank raised interest rates", "central bank", "analysts expect"]


def test_empty_and_stopword_only_text() -> None:
    assert key_phrases("") == []
    assert key_phrases("the and of to it") == []


@given(st.text(max_size=300), st.integers(min_value=0, max_value=10))
def test_phrases_come_from_the_text_and_respect_the_limit(text: str, limit: int) -> None:
    got = key_phrases(text, limit)
    assert len(got) <= limit and len(set(got)) == len(got)
    for phrase in got:
        assert all(w not in STOP for w in phrase.split())
        assert all(w in text.lower() for w in phrase.split())
