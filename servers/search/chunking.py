"""Split document text into overlapping word windows, the unit that gets one embedding each."""

from __future__ import annotations

from vsm_mcp.errors import InvalidArguments

DEFAULT_CHUNK_WORDS = 200
DEFAULT_OVERLAP_WORDS = 40


def chunk_text(text: str, size: int = DEFAULT_CHUNK_WORDS, overlap: int = DEFAULT_OVERLAP_WORDS) -> list[str]:
    """Windows of ``size`` words, each sharing ``overlap`` words with the previous one.

    Whitespace is normalised; an empty text gives no chunks. Every word lands in at least one
    chunk, and a text of at most ``size`` words is one chunk.
    """
    if size < 1:
        raise InvalidArguments(f"chunk_size must be at least 1 word, got {size}")
    if not 0 <= overlap < size:
        raise InvalidArguments(f"chunk_overlap must be in 0..chunk_size-1, got {overlap}")
    words = text.split()
    if not words:
        return []
    step = size - overlap
    chunks = []
    for start in range(0, len(words), step):
        chunks.append(" ".join(words[start : start + size]))
        if start + size >= len(words):
            break
    return chunks
