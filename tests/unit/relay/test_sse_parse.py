"""The relay's SSE parser (servers/relay/source.py ``parse_sse``) gives back what was encoded.

Invariant: any sequence of events, written as an SSE source writes them (``id``, ``event``, one
``data:`` line per line of text, comments anywhere, a blank line to dispatch), parses to the events
that carry data, in order, each with the last id seen so far; an event without data only moves the id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from servers.relay.source import SourceItem, SourceState, parse_sse

LINE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)
WORD = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="._-"), max_size=12)
EVENT = st.tuples(st.none() | WORD, st.none() | WORD, st.lists(LINE, max_size=4), st.booleans())


def encode(events: list[tuple[str | None, str | None, list[str], bool]]) -> list[str]:
    lines = []
    for ident, name, data, comment in events:
        if comment:
            lines.append(": keep-alive")
        if ident is not None:
            lines.append(f"id: {ident}")
        if name is not None:
            lines.append(f"event:{name}")  # no space after the colon is allowed too
        lines += [f"data: {text}" for text in data]
        lines.append("")
    return lines


async def parse(lines: list[str]) -> list[SourceItem]:
    async def feed() -> AsyncIterator[str]:
        for line in lines:
            yield line

    return [item async for item in parse_sse(feed(), SourceState())]


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENT, max_size=8))
def test_encoded_events_parse_back(events: list[tuple[str | None, str | None, list[str], bool]]) -> None:
    expected, last_id = [], ""
    for ident, name, data, _ in events:
        last_id = ident if ident is not None else last_id
        if data:
            expected.append(SourceItem(last_id, name or "message", "\n".join(data)))
    assert asyncio.run(parse(encode(events))) == expected


def test_an_event_larger_than_the_limit_is_cut_not_buffered_without_end() -> None:
    from servers.relay.source import MAX_EVENT_BYTES

    chunk = "x" * 1000
    lines = [f"data: {chunk}"] * (MAX_EVENT_BYTES // 1000 + 50) + ["", "data: next", ""]
    big, small = asyncio.run(parse(lines))
    assert len(big.data) <= MAX_EVENT_BYTES and big.data.startswith(chunk) and small.data == "next"
