"""iter_body re-chunking and check_range clamping: invariants over generated inputs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_mcp.errors import InvalidArguments
from vsm_mcp.storage.base import check_range, iter_body


def chunks_of(body: bytes | list[bytes], size: int) -> list[bytes]:
    async def stream(parts: list[bytes]) -> AsyncIterator[bytes]:
        for p in parts:
            yield p

    async def go() -> list[bytes]:
        src = body if isinstance(body, bytes) else stream(body)
        return [c async for c in iter_body(src, size)]

    return anyio.run(go)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=30), st.integers(1, 64))
def test_stream_rechunking_keeps_bytes_and_bounds_chunks(parts: list[bytes], size: int) -> None:
    out = chunks_of(parts, size)
    assert b"".join(out) == b"".join(parts)
    assert all(out)  # no empty chunks
    assert all(len(c) >= size for c in out[:-1])  # small pieces are gathered
    assert all(len(c) < size + max((len(p) for p in parts), default=0) for c in out)  # memory ~ one chunk


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_bytes_are_sliced(data: bytes, size: int) -> None:
    out = chunks_of(data, size)
    assert b"".join(out) == data and all(0 < len(c) <= size for c in out)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 100), st.integers(0, 120), st.one_of(st.none(), st.integers(0, 150)))
def test_check_range_clamps_or_refuses(size: int, start: int, end: int | None) -> None:
    try:
        lo, hi = check_range(size, start, end)
    except InvalidArguments:
        assert start > size or (start == size and size > 0) or (end is not None and end < start)
        return
    assert lo == start and 0 <= lo <= hi <= size
    assert hi == (size if end is None else min(end, size))


def test_negative_start_refused() -> None:
    with pytest.raises(InvalidArguments, match="byte range"):
        check_range(10, -1, None)
