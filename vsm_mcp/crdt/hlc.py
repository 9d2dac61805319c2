"""Hybrid logical clock: timestamps that follow wall time yet never run backwards.

A stamp is ``(wall_ms, logical)``. ``now()`` is greater than every stamp this clock issued or
observed, so a write made after seeing another write carries a larger stamp even when the
machines' clocks disagree. Stamps only *order* concurrent writes; the tie-break between equal
stamps is done by the caller on (stamp, node id, counter), which is a total order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Stamp = tuple[int, int]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridClock:
    """A monotonic (wall ms, logical counter) clock for one replica."""

    __slots__ = ("_now", "wall", "logical")

    def __init__(self, now: Callable[[], int] = wall_ms) -> None:
        self._now = now
        self.wall = 0
        self.logical = 0

    def now(self) -> Stamp:
        """A stamp for a local event: later than anything issued or observed so far."""
        physical = self._now()
        if physical > self.wall:
            self.wall, self.logical = physical, 0
        else:
            self.logical += 1
        return (self.wall, self.logical)

    def observe(self, stamp: Stamp) -> None:
        """Take a remote stamp into account so the next local stamp is larger."""
        if stamp > (self.wall, self.logical):
            self.wall, self.logical = stamp
