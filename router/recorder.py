"""Step 8 of the pipeline: the call's episode made durable at once, everything else off the hot path.

The dispatcher hands each finished call to ``Recorder.record`` (no await). There, before the
call's answer is returned, the episode row is appended to this process's journal
(vsm_mcp/journal.py: one ``write(2)``, so a crash — even SIGKILL — cannot lose an episode of a
call the client saw answered). A background task then drains the queue: it runs every
``CallObserver`` (metrics, bus events, spans) and writes the rows to ``episodes`` in batches —
one transaction per tenant per flush — every ``interval`` seconds or ``batch`` rows, whichever
comes first. When the database has caught up, the journal is emptied.

Nothing here blocks or slows a call: a full queue or a failed database write drops the record
from memory (``dropped``; observers do not see it) but not from the journal, which is replayed
into the database once it answers again (``_resync``). An episode is lost (``lost``) only when
it could not be journalled either (no journal, or the disk refused the write).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup
from sqlalchemy import insert

from vsm_mcp.db import Database
from vsm_mcp.hooks import CallInfo, CallObserver, CallOutcome
from vsm_mcp.journal import EPISODES, ROW_FIELDS, EpisodeJournal, encode, replay_file, replay_orphans

log = logging.getLogger(__name__)


def args_digest(arguments: dict[str, Any]) -> str:
    """sha256 of the arguments' canonical JSON (sorted keys, compact)."""
    try:
        raw = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        try:
            raw = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str).encode()
        except (TypeError, ValueError):
            raw = repr(arguments).encode()
    return hashlib.sha256(raw).hexdigest()


def episode_row(call: CallInfo, outcome: CallOutcome, when: float) -> list[Any]:
    """The episode's column values in ``vsm_mcp.journal.ROW_FIELDS`` order."""
    return [
        f"{random.getrandbits(128):032x}",  # unique, not secret: no getrandom system call per call
        call.principal.tenant_id,
        when,
        call.principal.id[:64],
        call.server[:128],
        call.tool[:128],
        outcome.outcome[:32],
        round(outcome.duration_ms, 3),
        args_digest(call.arguments),
        outcome.error[:2000],
        call.trace_id[:64],
        {"source": call.source, "public_name": call.public_name, "cached": outcome.cached},
    ]


class Recorder:
    """See the module docstring. ``start(tg)`` before use; ``aclose()`` flushes what is queued."""

    def __init__(
        self,
        db: Database | None,
        observers: list[CallObserver],
        *,
        interval: float = 0.5,
        batch: int = 500,
        capacity: int = 50_000,
        journal_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.observers = observers
        self.interval = interval
        self.batch = batch
        self.dropped = 0  # records not queued (observers did not see them)
        self.lost = 0  # episodes in neither the database nor the journal
        self.written = 0
        self.recovered = 0  # episodes replayed from a journal (a crashed process's, or ours)
        self.capacity = capacity
        self.journal_dir = journal_dir if db is not None else None
        self.journal: EpisodeJournal | None = None
        self._pending: deque[tuple[CallInfo, CallOutcome, list[Any] | None]] = deque()
        self._resync = False  # the journal holds rows the database may lack: replay it
        self._done = anyio.Event()
        self._wakeup = anyio.Event()  # set when a batch is full or on close: flush before the interval
        self._started = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, call: CallInfo, outcome: CallOutcome) -> None:
        if not self._started:
            return
        now = time.time()
        outcome.finished_at = now
        # Built here only when it must be on disk before the answer; otherwise at the flush.
        row = episode_row(call, outcome, now) if self.journal is not None else None
        journalled = row is not None and self.journal is not None and self.journal.append(encode(row))
        if len(self._pending) >= self.capacity:
            self.dropped += 1
            if journalled:
                self._resync = True
            elif self.db is not None:
                self.lost += 1
            return
        self._pending.append((call, outcome, row))
        if len(self._pending) >= self.batch:
            self._wakeup.set()

    async def start(self, tg: TaskGroup) -> None:
        if self.db is not None and self.journal_dir is not None:
            # Episodes a crashed predecessor journalled but never wrote: into the database first.
            self.recovered += await replay_orphans(self.db, self.journal_dir)
            try:
                self.journal = EpisodeJournal(self.journal_dir)
            except OSError as exc:  # a read-only home must not stop the router; audit degrades
                log.error("episode journal under %s unavailable, episodes are batched only: %s", self.journal_dir, exc)
        self._started = True
        tg.start_soon(self._run)

    async def aclose(self) -> None:
        if not self._started:
            return
        self._started = False
        self._wakeup.set()
        with anyio.move_on_after(10):
            await self._done.wait()

    async def _run(self) -> None:
        # Sleep between flushes and drain what piled up, instead of waking per record: one task
        # switch per call was a measurable share of the router's CPU at a few thousand calls/s.
        try:
            while True:
                closing = not self._started  # aclose() ran: drain once more, then stop
                while self._pending:
                    n = min(self.batch, len(self._pending))
                    await self._flush([self._pending.popleft() for _ in range(n)])
                await self._settle_journal()
                if closing:
                    return
                with anyio.move_on_after(self.interval):
                    await self._wakeup.wait()
                self._wakeup = anyio.Event()
        finally:
            if self.journal is not None:
                self.journal.close(keep=self._resync or bool(self._pending))
            self._done.set()

    async def _settle_journal(self) -> None:
        """Called with the queue empty: every journalled row is in the database now, unless a
        write failed or the queue overflowed — then replay the journal (missing ids only) first."""
        journal = self.journal
        if journal is None or self.db is None:
            return
        if self._resync:
            self._resync = False
            try:
                self.recovered += await replay_file(self.db, journal.path)
            except Exception as exc:  # still down: keep the file, try again next round
                self._resync = True
                log.warning("episode journal replay failed, kept: %s", exc)
                return
        if not self._pending and not self._resync and journal.size():
            journal.truncate()  # no await since the queue was seen empty: nothing was appended since

    async def _flush(self, items: list[tuple[CallInfo, CallOutcome, list[Any] | None]]) -> None:
        for call, outcome, _row in items:
            for obs in self.observers:
                try:
                    await obs.observe(call, outcome)
                except Exception:  # an observer's failure must not stop the others or the audit
                    log.exception("call observer %r failed", obs)
        if self.db is None:
            return
        # Plain rows through one Core INSERT per tenant: building ORM instances cost more CPU
        # than the rest of the flush (py-spy), and it runs on the event loop that serves calls.
        by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for call, outcome, row in items:
            row = row or episode_row(call, outcome, outcome.finished_at)
            by_tenant[row[1]].append(_insertable(row))
        for tenant, rows in by_tenant.items():
            try:
                async with self.db.tenant(tenant) as s:
                    await s.execute(insert(EPISODES), rows)
                self.written += len(rows)
            except Exception as exc:  # the database being down must not take the router down
                if self.journal is not None:
                    self._resync = True  # the rows are in the journal: replayed when it answers
                else:
                    self.lost += len(rows)
                self.dropped += len(rows)
                log.warning("writing %d episodes for tenant %s failed: %s", len(rows), tenant, exc)


def _insertable(row: list[Any]) -> dict[str, Any]:
    out = dict(zip(ROW_FIELDS, row, strict=True))
    out["created_at"] = out["updated_at"] = datetime.fromtimestamp(row[2], UTC)
    return out
