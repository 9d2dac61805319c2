"""``file://<dir>`` — objects as files under one root directory.

Writes are atomic: the body streams into ``.vsm-tmp-<pid>-<random>`` in the target's
directory, is fsynced, renamed over the key's path and the directory fsynced, so a crash
leaves the old object or none, never part of one. Temp files whose writer process is gone
are removed when a backend opens the root. sha256 and content type ride along as extended
attributes set before the rename (computed again on ``stat`` where xattrs are unsupported).
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import anyio

from vsm_mcp.errors import Conflict, InvalidArguments, NotFound
from vsm_mcp.storage.base import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    Body,
    Hasher,
    ObjectInfo,
    ObjectPage,
    check_range,
    collect,
    iter_body,
)
from vsm_mcp.storage.keys import validate_key, validate_prefix

TMP_PREFIX = ".vsm-tmp-"
STALE_TMP_SECONDS = 24 * 3600
_XA_SHA, _XA_TYPE = "user.vsm.sha256", "user.vsm.content_type"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileReader:
    def __init__(self, fh: BinaryIO, info: ObjectInfo, start: int, end: int) -> None:
        self.info, self.start, self.end, self._fh = info, start, end, fh

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pos = self.start
        try:
            while pos < self.end:
                chunk = await anyio.to_thread.run_sync(os.pread, self._fh.fileno(), min(CHUNK_SIZE, self.end - pos), pos)
                if not chunk:  # truncated underneath us; the rename protocol makes this unexpected
                    break
                pos += len(chunk)
                yield chunk
        finally:
            self._fh.close()

    async def aclose(self) -> None:
        self._fh.close()


class FileStorage:
    """Objects under ``root``; a key's path never leaves it (checked after resolving)."""

    def __init__(self, root: str | Path, url: str = "") -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = url or f"file://{self.root}"
        self.removed_orphans = self.cleanup_orphans()

    # --- paths ---------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        validate_key(key)
        if any(seg.startswith(TMP_PREFIX) for seg in key.split("/")):
            raise InvalidArguments(f"invalid object key {key!r}: segments may not start with {TMP_PREFIX!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidArguments(f"invalid object key {key!r}: resolves outside the storage root")
        return path

    def cleanup_orphans(self) -> int:
        """Remove temp files left by dead writers (or older than a day); returns how many."""
        removed, now = 0, time.time()
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(TMP_PREFIX):
                    continue
                path = os.path.join(dirpath, name)
                pid_text = name[len(TMP_PREFIX) :].split("-", 1)[0]
                alive = pid_text.isdigit() and _pid_alive(int(pid_text))
                with contextlib.suppress(FileNotFoundError):
                    if not alive or now - os.stat(path).st_mtime > STALE_TMP_SECONDS:
                        os.unlink(path)
                        removed += 1
        return removed

    # --- writes --------------------------------------------------------------------
    async def put(self, key: str, body: Body, *, content_type: str = DEFAULT_CONTENT_TYPE) -> ObjectInfo:
        path = self._path(key)
        if path.is_dir():
            raise Conflict(f"object key {key!r} is a prefix of other objects")
        tmp, fh = await anyio.to_thread.run_sync(self._open_temp, path)
        hasher = Hasher()

        def write(chunk: bytes) -> None:
            hasher.update(chunk)
            fh.write(chunk)

        try:
            async for chunk in iter_body(body):
                await anyio.to_thread.run_sync(write, chunk)
            await anyio.to_thread.run_sync(self._commit, fh, tmp, path, hasher.hexdigest, content_type)
        except BaseException:
            fh.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return ObjectInfo(key, hasher.size, datetime.now(UTC), hasher.hexdigest, content_type or DEFAULT_CONTENT_TYPE)

    def _open_temp(self, path: Path) -> tuple[Path, BinaryIO]:
        for _ in range(3):  # a concurrent delete may prune the parent between mkdir and create
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
                fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                return tmp, os.fdopen(fd, "wb", buffering=0)
            except FileNotFoundError:
                continue
            except (FileExistsError, NotADirectoryError):
                break
        raise Conflict(f"cannot create {path.relative_to(self.root)}: a parent segment is an existing object")

    @staticmethod
    def _commit(fh: BinaryIO, tmp: Path, path: Path, sha256: str, content_type: str) -> None:
        with contextlib.suppress(OSError):  # xattrs are an optimisation; stat recomputes without them
            os.setxattr(fh.fileno(), _XA_SHA, sha256.encode())
            os.setxattr(fh.fileno(), _XA_TYPE, (content_type or DEFAULT_CONTENT_TYPE).encode())
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        try:
            os.replace(tmp, path)
        except IsADirectoryError:
            raise Conflict(f"object key {path.name!r} is a prefix of other objects") from None
        _fsync_dir(path.parent)

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        return await anyio.to_thread.run_sync(self._delete, path)

    def _delete(self, path: Path) -> bool:
        try:
            os.unlink(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        _fsync_dir(path.parent)
        parent = path.parent
        while parent != self.root:  # prune empty directories so the tree mirrors the keys
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    # --- reads ---------------------------------------------------------------------
    async def stat(self, key: str) -> ObjectInfo:
        return await anyio.to_thread.run_sync(self._stat, key, self._path(key))

    def _stat(self, key: str, path: Path, *, digest: bool = True) -> ObjectInfo:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no object {key!r}", data={"key": key}) from None
        if not os.path.isfile(path):
            raise NotFound(f"no object {key!r}", data={"key": key})
        sha, ctype = "", ""
        with contextlib.suppress(OSError):
            sha = os.getxattr(path, _XA_SHA).decode()
            ctype = os.getxattr(path, _XA_TYPE).decode()
        if not sha and digest:
            with open(path, "rb") as fh:
                sha = hashlib.file_digest(fh, "sha256").hexdigest()
        ctype = ctype or mimetypes.guess_type(key)[0] or DEFAULT_CONTENT_TYPE
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), sha, ctype)

    async def open(self, key: str, *, start: int = 0, end: int | None = None) -> _FileReader:
        path = self._path(key)

        def opener() -> tuple[BinaryIO, ObjectInfo]:
            try:
                fh = open(path, "rb")  # noqa: SIM115 - the reader closes it
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise NotFound(f"no object {key!r}", data={"key": key}) from None
            # stat the open handle: a concurrent rename can't make size and bytes disagree
            st = os.fstat(fh.fileno())
            info = self._stat(key, path, digest=False)
            return fh, ObjectInfo(key, st.st_size, info.modified, info.sha256, info.content_type)

        fh, info = await anyio.to_thread.run_sync(opener)
        try:
            lo, hi = check_range(info.size, start, end)
        except BaseException:
            fh.close()
            raise
        return _FileReader(fh, info, lo, hi)

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return await collect(await self.open(key, start=start, end=end))

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        return await anyio.to_thread.run_sync(path.is_file)

    async def list(self, prefix: str = "", *, after: str = "", limit: int = 1000) -> ObjectPage:
        validate_prefix(prefix)
        return await anyio.to_thread.run_sync(self._list, prefix, after, limit)

    def _list(self, prefix: str, after: str, limit: int) -> ObjectPage:
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        keys: list[str] = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                key = name if rel == "." else f"{rel}/{name}"
                if not name.startswith(TMP_PREFIX) and key.startswith(prefix) and key > after:
                    keys.append(key)
        keys.sort()
        chosen = keys[:limit]
        items = []
        for key in chosen:
            with contextlib.suppress(NotFound):  # deleted while listing
                items.append(self._stat(key, self.root / key, digest=False))
        return ObjectPage(items, chosen[-1] if len(keys) > limit else None)

    async def aclose(self) -> None:
        return None

