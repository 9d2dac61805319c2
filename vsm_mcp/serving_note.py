"""The note a serving gateway leaves for local commands: where it listens, where its data is.

``vsm-mcp connect`` mints a key in the gateway's database, so it has to open the data the
gateway uses. Run from the folder of a project (where the client's configuration belongs) it
found ``./.vsm`` of that folder instead and asked for ``VSM_HOME``. ``vsm-mcp serve`` now writes
one small JSON file per listening address — the pattern of Jupyter's runtime files — under
``$VSM_RUNTIME_DIR`` (default ``$XDG_STATE_HOME/vsm-mcp/gateways``, i.e.
``~/.local/state/vsm-mcp/gateways``), readable by its user only (it may hold a database URL
with a password, as ``~/.pgpass`` does), and removes it when it stops. ``connect`` reads the
note of the gateway at ``--url`` when nothing says where the data is. A note whose process is
gone (a killed server) is ignored, and so is a note another user owns.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vsm_mcp.config import Settings, default_database_url

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})


@dataclass(frozen=True)
class ServingNote:
    url: str
    home: Path
    database_url: str  # empty: the default SQLite file under ``home``
    migration_database_url: str  # empty: the same as ``database_url``
    pid: int
    path: Path


def runtime_dir(settings: Settings) -> Path:
    if settings.runtime_dir:
        return Path(settings.runtime_dir)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "vsm-mcp" / "gateways"


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = (parts.hostname or "127.0.0.1").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return ("loopback" if host in _LOOPBACK else host), port


def _absolute(url: str, default: str) -> str:
    """``url`` as another folder must read it: empty when it is the default under home, a
    relative SQLite path made absolute."""
    if url == default:
        return ""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix) and not url[len(prefix) :].startswith("/"):
            return prefix + str(Path(url[len(prefix) :]).resolve())
    return url


def leave(settings: Settings, url: str) -> Path:
    """Write the note of the gateway serving ``url`` with ``settings``; its path."""
    home = settings.home.resolve()
    default = default_database_url(settings.home)
    database_url = _absolute(settings.database_url, default)
    migration = _absolute(settings.migration_database_url, default)
    body = {"url": url, "home": str(home), "database_url": database_url,
            "migration_database_url": "" if migration == database_url else migration, "pid": os.getpid()}
    folder = runtime_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    host, port = _address(url)
    path = folder / f"{host.replace(':', '_')}-{port}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(body, fh)
    os.replace(tmp, path)  # a reader never sees half a note
    return path


def remove(path: Path) -> None:
    """Remove the note at ``path`` if it is still this process's (a newer server may own it)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, but not a note of ours to trust
        return False
    return True


def find(settings: Settings, url: str) -> ServingNote | None:
    """The note of the live gateway serving ``url`` (loopback names are one host), or None."""
    want = _address(url)
    folder = runtime_dir(settings)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            if path.stat().st_uid != os.getuid():
                continue  # another user's note (a shared VSM_RUNTIME_DIR) would point us at their data
            body = json.loads(path.read_text(encoding="utf-8"))
            note = ServingNote(str(body["url"]), Path(body["home"]), str(body.get("database_url", "")),
                               str(body.get("migration_database_url", "")), int(body["pid"]), path)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a note (or half of one from another tool): not ours to read
        if _address(note.url) == want and _alive(note.pid):
            return note
    return None
