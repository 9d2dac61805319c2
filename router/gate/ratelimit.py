"""``Retry-After`` as HTTP wants it: whole seconds, rounded up, at least 1.

The gate's request limits live in router/gate/limits.py."""

from __future__ import annotations


def retry_after_header(seconds: float) -> str:
    return str(max(1, int(seconds + 0.999)))
