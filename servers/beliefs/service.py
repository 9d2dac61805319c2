"""The replicated BeliefSet of every tenant in this process: writes, replication, anti-entropy.

Write path (``assert_belief`` / ``retract``): build the delta, commit it to the write-ahead log,
apply it, *then* acknowledge — a write the caller saw succeed survives a SIGKILL. The delta is
then published on ``beliefs.delta.<tenant>``; if the bus is down it stays pending and is
retried (as a joined delta group) on the next tick.

Receive path: deltas from peers are joined and logged. Every ``beliefs_anti_entropy_s`` each
loaded tenant publishes a digest on ``beliefs.sync.<tenant>``; a peer that sees it is behind
(or ahead) answers with the missing delta or its live dots (see ``vsm_mcp.crdt.sync``). A node
that hears about a tenant it has not loaded loads it and publishes its own digest at once, so a
node started later catches up within one round.

Replication messages carry no ``Event.tenant`` (the tenant is in the topic): they are internal
traffic and stay out of the tenant-visible event log; ``beliefs.changed`` (local writes only,
so each change is announced once cluster-wide) is the event for subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from servers.beliefs.store import BeliefStore
from vsm_mcp.bus import Bus, Overflow, Subscription
from vsm_mcp.bus.events import Event
from vsm_mcp.config import Settings
from vsm_mcp.crdt import (
    Belief,
    BeliefSet,
    Digest,
    Entry,
    LiveDots,
    Replica,
    from_obj,
    removals_for,
    reply_to,
    to_obj,
)
from vsm_mcp.db import Database
from vsm_mcp.errors import InvalidArguments, VsmError

log = logging.getLogger("servers.beliefs")
DELTA = "beliefs.delta"
SYNC = "beliefs.sync"
CHANGED = "beliefs.changed"


def node_id_for(settings: Settings) -> str:
    """``VSM_BELIEFS_NODE_ID``, or an id generated once and kept in ``<home>/beliefs-node-id``."""
    if settings.beliefs_node_id:
        return settings.beliefs_node_id
    path = Path(settings.home) / "beliefs-node-id"
    with contextlib.suppress(OSError):
        existing = path.read_text().strip()
        if existing:
            return existing
    node = f"{socket.gethostname()[:24]}-{secrets.token_hex(6)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(node + "\n")
    return node


class _Stale(Exception):
    """The replica was discarded after a failed log write; reload and retry."""


class TenantReplica:
    """One tenant's replica and its bookkeeping (log position, unpublished deltas, peers)."""

    def __init__(self, tenant: str, replica: Replica, last_seq: int, log_rows: int) -> None:
        self.tenant = tenant
        self.replica = replica
        self.lock = asyncio.Lock()
        self.seq = last_seq
        self.log_rows = log_rows
        self.pending: list[BeliefSet] = []
        self.peers: dict[str, float] = {}
        self.stale = False  # set when a log write failed: this copy is replaced by a reload

    @property
    def state(self) -> BeliefSet:
        return self.replica.state


class BeliefService:
    """All tenants' replicas of this process; ``running()`` drives replication (refcounted)."""

    def __init__(self, settings: Settings, db: Database, bus: Bus, node: str | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.node = node or node_id_for(settings)
        self.store = BeliefStore(db, self.node)
        self.interval = settings.beliefs_anti_entropy_s
        self._tenants: dict[str, TenantReplica] = {}
        self._load_lock = asyncio.Lock()
        self._users = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Subscription | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BeliefService]:
        """Replication runs while at least one holder is inside this context."""
        self._users += 1
        if self._users == 1:
            first = await self._subscribe()  # before returning: nothing sent after start is missed
            self._tasks = [
                asyncio.create_task(self._receive_loop(first), name=f"beliefs-receive-{self.node}"),
                asyncio.create_task(self._tick_loop(), name=f"beliefs-anti-entropy-{self.node}"),
            ]
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0:
                await self._stop()

    async def _stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._sub is not None:  # the receive task may have been cancelled before it ran
            await self._sub.aclose()
            self._sub = None
        for tr in list(self._tenants.values()):
            with contextlib.suppress(Exception):  # best effort: the log already has everything
                await self._flush(tr)

    @property
    def is_running(self) -> bool:
        return bool(self._tasks)

    # -- tenants -------------------------------------------------------------------------
    async def replica(self, tenant: str) -> TenantReplica:
        """The tenant's replica, loaded from the database on first use."""
        tr = self._tenants.get(tenant)
        if tr is not None:
            return tr
        async with self._load_lock:
            tr = self._tenants.get(tenant)
            if tr is None:
                loaded = await self.store.load(tenant)
                tr = TenantReplica(tenant, Replica(self.node, loaded.state), loaded.last_seq, loaded.log_rows)
                self._tenants[tenant] = tr
                if self.is_running:  # ask peers for whatever we missed while away
                    try:
                        await self._publish_digest(tr)
                    except (VsmError, OSError, ConnectionError) as exc:  # the next tick asks again
                        log.warning("beliefs: cannot publish a digest for tenant %s: %s", tenant, exc)
        return tr

    # -- local writes ----------------------------------------------------------------------
    async def assert_belief(self, tenant: str, key: str, belief: Belief) -> Entry:
        """Durably set ``key``; returns the new entry once it is in the write-ahead log."""
        tr, delta = await self._write(tenant, lambda r: r.assert_belief(key, belief, apply=False))
        assert delta is not None
        await self._after_write(tr, delta, key, "assert")
        return next(iter(delta.entries.values()))

    async def retract(self, tenant: str, key: str) -> bool:
        """Durably remove ``key`` as seen here; False if it was absent."""
        tr, delta = await self._write(tenant, lambda r: r.retract(key, apply=False))
        if delta is None:
            return False
        await self._after_write(tr, delta, key, "retract")
        return True

    async def _write(
        self, tenant: str, make: Callable[[Replica], BeliefSet | None]
    ) -> tuple[TenantReplica, BeliefSet | None]:
        """Build a delta, log it, apply it — as one step a cancelled caller cannot cut in half
        (a logged but unapplied delta would let the next write reuse its dot).

        If logging fails, the commit may still have happened (connection lost during COMMIT),
        so the in-memory replica is discarded and reloaded from the database before the next
        write: whichever way the commit went, no dot is issued twice.
        """
        while True:
            tr = await self.replica(tenant)

            async def step(tr: TenantReplica = tr) -> BeliefSet | None:
                async with tr.lock:
                    if tr.stale:
                        raise _Stale
                    delta = make(tr.replica)
                    if delta is not None:
                        try:
                            await self._log(tr, delta)
                        except BaseException:
                            tr.stale = True
                            if self._tenants.get(tenant) is tr:
                                del self._tenants[tenant]
                            raise
                        tr.replica.join(delta)
                    return delta

            try:
                return tr, await asyncio.shield(step())
            except _Stale:
                continue

    async def _log(self, tr: TenantReplica, delta: BeliefSet) -> None:
        await self.store.append(tr.tenant, tr.seq + 1, delta)
        tr.seq += 1
        tr.log_rows += 1

    async def _after_write(self, tr: TenantReplica, delta: BeliefSet, key: str, op: str) -> None:
        tr.pending.append(delta)
        await self._flush(tr)
        with contextlib.suppress(VsmError, OSError):
            await self.bus.publish(
                Event(topic=CHANGED, tenant=tr.tenant, type=CHANGED, data={"keys": [key], "op": op, "node": self.node})
            )

    async def _flush(self, tr: TenantReplica) -> None:
        """Publish the pending deltas as one delta group; on failure they stay pending."""
        if not tr.pending:
            return
        batch, tr.pending = tr.pending, []
        group = BeliefSet()
        for d in batch:
            group.join(d)
        try:
            await self._send(tr.tenant, DELTA, {"delta": to_obj(group)})
        except (VsmError, OSError, ConnectionError) as exc:
            log.warning("beliefs: publishing %d deltas failed (%s); will retry", len(batch), exc)
            tr.pending[:0] = batch

    async def _send(self, tenant: str, kind: str, data: dict[str, Any]) -> None:
        await self.bus.publish(Event(topic=f"{kind}.{tenant}", type=kind, data={"node": self.node, **data}))

    # -- replication -----------------------------------------------------------------------
    async def _subscribe(self) -> Subscription | None:
        try:
            self._sub = await self.bus.subscribe([f"{DELTA}.*", f"{SYNC}.*"], maxsize=10_000)
        except (VsmError, OSError, ConnectionError) as exc:
            log.warning("beliefs: cannot subscribe to the bus (%s); retrying", exc)
            self._sub = None
        return self._sub

    async def _receive_loop(self, first: Subscription | None) -> None:
        sub = first
        while True:
            if sub is None:
                await asyncio.sleep(self.interval)
                sub = await self._subscribe()
                continue
            try:
                async for event in sub:
                    await self._handle(event)
            except Overflow:
                log.warning("beliefs: fell behind the bus; resubscribing (anti-entropy repairs the gap)")
            except (VsmError, OSError, ConnectionError) as exc:
                log.warning("beliefs: bus subscription lost (%s); resubscribing", exc)
                await asyncio.sleep(self.interval)
            finally:
                await sub.aclose()
            sub = self._sub = None

    async def _handle(self, event: Event) -> None:
        try:
            await self._on_event(event)
        except VsmError as exc:
            log.warning("beliefs: ignored %s from the bus: %s", event.topic, exc)
        except Exception:
            # One bad message (or a bug it triggers) must not stop replication for every
            # tenant; anti-entropy repairs whatever this message would have brought.
            log.exception("beliefs: failed to handle %s", event.topic)

    async def _on_event(self, event: Event) -> None:
        data = event.data
        sender = data.get("node")
        if not isinstance(sender, str) or not sender or sender == self.node:
            return
        target = data.get("to")
        if target is not None and target != self.node:
            return
        tenant = event.topic.split(".", 2)[-1]
        if not 0 < len(tenant) <= 36:
            raise InvalidArguments(f"bad tenant in topic {event.topic!r}")
        tr = await self.replica(tenant)
        tr.peers[sender] = time.monotonic()
        kind = data.get("kind", "delta")
        if "delta" in data:
            await self._join_remote(tr, from_obj(data["delta"]))
        elif kind == "digest":
            reply = reply_to(tr.state, Digest.from_obj(data.get("digest")))
            if isinstance(reply, LiveDots):
                await self._send(tenant, SYNC, {"kind": "live", "to": sender, "live": reply.to_obj()})
            elif reply is not None:
                await self._send(tenant, SYNC, {"kind": "delta", "to": sender, "delta": to_obj(reply)})
        elif kind == "live":
            removal = removals_for(tr.state, LiveDots.from_obj(data.get("live")))
            if removal is not None:
                await self._send(tenant, SYNC, {"kind": "delta", "to": sender, "delta": to_obj(removal)})

    async def _join_remote(self, tr: TenantReplica, delta: BeliefSet) -> None:
        async with tr.lock:
            if tr.stale:  # being reloaded; anti-entropy brings this again
                return
            before = tr.state.ctx.dot_count()
            changed = tr.replica.join(delta)
            if changed or tr.state.ctx.dot_count() != before:
                # Logged after the join: a remote delta lost in a crash is fetched again by anti-entropy.
                await self._log(tr, delta)

    async def _publish_digest(self, tr: TenantReplica) -> None:
        await self._send(tr.tenant, SYNC, {"kind": "digest", "digest": Digest.of(tr.state).to_obj()})

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for tr in list(self._tenants.values()):
                try:
                    await self._flush(tr)
                    await self._publish_digest(tr)
                    if tr.log_rows >= self.settings.beliefs_snapshot_every:
                        await self.snapshot(tr)
                except (VsmError, OSError, ConnectionError) as exc:
                    log.warning("beliefs: anti-entropy for tenant %s failed: %s", tr.tenant, exc)
                except Exception:  # keep ticking for the other tenants; logged with its traceback
                    log.exception("beliefs: anti-entropy for tenant %s failed", tr.tenant)

    async def snapshot(self, tr: TenantReplica) -> None:
        """Write the tenant's full state and trim the log it covers."""
        async with tr.lock:
            state, upto, rows = tr.state.copy(), tr.seq, tr.log_rows
        await self.store.snapshot(tr.tenant, state, upto)
        tr.log_rows -= rows

    # -- reading ---------------------------------------------------------------------------
    def stats(self, tr: TenantReplica) -> dict[str, Any]:
        horizon = time.monotonic() - 3 * self.interval
        ctx = tr.state.ctx
        return {
            "node": self.node,
            "size": len(tr.state),
            "entries": len(tr.state.entries),
            "pending_deltas": len(tr.pending),
            "peers": sorted(p for p, seen in tr.peers.items() if seen >= horizon),
            "context": {"nodes": len(ctx.vv), "out_of_order_dots": ctx.metadata_size() - len(ctx.vv)},
            "log_rows": tr.log_rows,
            "digest": f"{tr.state.digest:016x}",
            "replicating": self.is_running,
        }
