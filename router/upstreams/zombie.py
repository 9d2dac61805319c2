"""Zombie detection for stdio upstreams: alive (the process has not exited) but stuck.

A child that stops reading its stdin, or whose loop is blocked, still has a pid — the old
watch (a ping every 15 s, and only while idle) saw nothing, and calls hung until their
timeout. ``watch_liveness`` pings every ``bound / 4`` *whether or not calls are in flight* (a
healthy MCP server answers a ping next to running tools) and gives each ping ``bound / 2``: a
child that stops answering is named within ``0.75 × bound`` of its last answer. A ping stuck in
a full stdin pipe times out the same way, so "stops reading stdin" needs no separate probe.

What happens next is the upstream's drain (router/upstreams/upstream.py): the session takes no
new calls, its in-flight calls get ``VSM_UPSTREAM_DRAIN_GRACE_S``, then the process group is
killed (SIGKILL: a stopped or wedged process ignores anything gentler), in-flight calls fail
with ``UpstreamUnavailable`` and the supervisor starts a new process; the pool's other sessions
and the other upstreams serve throughout. Each detection is an ``alert.<tenant>.zombie`` event
(the default tenant's: an upstream serves every tenant) and counts in ``vsm_zombies_total``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio


@dataclass(frozen=True)
class Verdict:
    """Why the watch returned: ``zombie`` (stuck: drain and replace) or ``dead`` (gone: reconnect)."""

    kind: str
    reason: str


async def watch_liveness(dead: anyio.Event, ping: Callable[[], Awaitable[object]], bound: float) -> Verdict:
    """Return when the session is dead (``dead`` set, or a ping failed) or stuck (no ping answer)."""
    interval, timeout = bound / 4, bound / 2
    while True:
        with anyio.move_on_after(interval):
            await dead.wait()
        if dead.is_set():
            return Verdict("dead", "session closed")
        try:
            with anyio.fail_after(timeout):
                await ping()
        except TimeoutError:
            return Verdict("zombie", f"no answer to a ping within {timeout:g}s (stuck or not reading stdin)")
        except Exception as exc:  # the session broke under the ping: dead, not stuck
            return Verdict("dead", f"health ping failed: {type(exc).__name__}: {exc}")
