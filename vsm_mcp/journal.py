"""The episode journal: an append-only local file that makes the audit trail survive a crash.

Why: episodes are written to the database in batches, off the hot path (router/recorder.py),
so a SIGKILL used to lose every call of the last half second — calls the clients had already
seen answered. Now each episode row is appended to ``<home>/journal/episodes.<pid>[.<n>].jsonl`` with
one ``write(2)`` on ``O_APPEND`` *before* the call's answer is returned: once the kernel holds
the bytes, the process dying no longer loses them (power loss is the database's business, not
this file's: the batch commit follows within ``interval``). The batches to the database carry on
as before; the journal is emptied whenever they have caught up, so it stays small.

Replay: at start (``replay_orphans``) every journal whose process is gone — and our own pid's,
which can only be a dead predecessor's — is read and its rows inserted where the database lacks
them (by episode id), then deleted. A torn last line (killed mid-write) is skipped. The same
replay runs for our own file when the queue overflowed or a database write failed, so neither
loses an episode any more.

A row is the episode's column values (``ROW_FIELDS``) as one compact JSON array per line.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from vsm_mcp import json_fast
from vsm_mcp.db import Database
from vsm_mcp.models import Episode

log = logging.getLogger(__name__)

EPISODES = Episode.__table__  # type: ignore[attr-defined]
ROW_FIELDS = (
    "id", "tenant_id", "created_at", "principal_id", "server", "tool", "outcome",
    "duration_ms", "args_sha256", "error", "trace_id", "data",
)
_NAME = re.compile(r"^episodes\.(\d+)(?:\.\d+)?\.jsonl$")
_OPEN: set[Path] = set()  # journals this process has open (tests run several routers per process)
_SEQ = itertools.count()
_CHUNK = 500


def journal_dir(home: Path) -> Path:
    return Path(home) / "journal"


def encode(row: Sequence[Any]) -> bytes:
    """One journal line: the row as a JSON array (``created_at`` as epoch seconds)."""
    return json_fast.dumps(list(row)) + b"\n"


def decode(line: bytes) -> dict[str, Any] | None:
    """The insertable episode row of one line; None for a torn or foreign line."""
    try:
        values = json_fast.loads(line)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != len(ROW_FIELDS):
        return None
    row = dict(zip(ROW_FIELDS, values, strict=True))
    if not isinstance(row["id"], str) or not isinstance(row["tenant_id"], str) or not row["tenant_id"]:
        return None
    created = datetime.fromtimestamp(float(row["created_at"]), UTC)
    row["created_at"] = row["updated_at"] = created
    return row


class EpisodeJournal:
    """This process's journal file. ``append`` is synchronous: one system call, no await."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        directory = directory.resolve()
        n = next(_SEQ)
        self.path = directory / (f"episodes.{os.getpid()}.jsonl" if n == 0 else f"episodes.{os.getpid()}.{n}.jsonl")
        _OPEN.add(self.path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.failed = 0

    def append(self, line: bytes) -> bool:
        """Write one encoded row; False when it could not be written (disk full, closed)."""
        if self._fd is None:
            return False
        try:
            os.write(self._fd, line)
            return True
        except OSError as exc:
            self.failed += 1
            if self.failed == 1 or self.failed % 1000 == 0:
                log.error("episode journal %s: write failed (%d so far): %s", self.path, self.failed, exc)
            return False

    def truncate(self) -> None:
        """Forget every row: call only when all of them are in the database."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)

    def size(self) -> int:
        return os.fstat(self._fd).st_size if self._fd is not None else 0

    def close(self, *, keep: bool) -> None:
        """Close; the file is removed unless ``keep`` (rows not yet in the database)."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        _OPEN.discard(self.path)
        if not keep:
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # not one of ours (see orphan_journals): left by a dead predecessor with our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphan_journals(directory: Path) -> list[Path]:
    """Journals of processes that are gone (their rows may be missing from the database)."""
    if not directory.is_dir():
        return []
    directory = directory.resolve()
    out = []
    for path in sorted(directory.iterdir()):
        m = _NAME.match(path.name)
        if m and path not in _OPEN and not _alive(int(m.group(1))):
            out.append(path)
    return out


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open("rb") as f:
        for line in f:
            row = decode(line)
            if row is not None:
                rows.append(row)
    return rows


async def insert_missing(db: Database, rows: Iterable[dict[str, Any]]) -> int:
    """Insert the rows whose id the database lacks, one transaction per tenant and chunk.
    Returns how many were inserted. Raises when the database fails (the caller keeps the file)."""
    by_tenant: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        by_tenant[row["tenant_id"]][row["id"]] = row
    inserted = 0
    for tenant, by_id in by_tenant.items():
        ids = list(by_id)
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            async with db.tenant(tenant) as s:
                have = set((await s.execute(select(EPISODES.c.id).where(EPISODES.c.id.in_(chunk)))).scalars())
                missing = [by_id[k] for k in chunk if k not in have]
                if missing:
                    await s.execute(insert(EPISODES), missing)
            inserted += len(missing)
    return inserted


async def replay_file(db: Database, path: Path) -> int:
    return await insert_missing(db, read_rows(path))


async def replay_orphans(db: Database, directory: Path) -> int:
    """Replay and delete every orphaned journal in ``directory``; returns the rows inserted.
    A journal that cannot be replayed (database down) is kept for the next start."""
    total = 0
    for path in orphan_journals(directory):
        try:
            n = await replay_file(db, path)
        except Exception as exc:  # keep the file: the rows are not in the database yet
            log.warning("episode journal %s: replay failed, kept for the next start: %s", path, exc)
            continue
        total += n
        path.unlink(missing_ok=True)
        if n:
            log.warning("episode journal %s: %d episode(s) recovered after a crash", path.name, n)
    return total
