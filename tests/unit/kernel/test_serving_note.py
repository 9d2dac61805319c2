"""The note a serving gateway leaves for `vsm-mcp connect` (vsm_mcp/serving_note.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vsm_mcp import serving_note
from vsm_mcp.config import Settings, load_settings


def _settings(tmp_path: Path, **extra: str) -> Settings:
    return load_settings(runtime_dir=str(tmp_path / "rt"), home=str(tmp_path / "data" / ".vsm"), **extra)


def test_a_note_says_where_the_gateway_listens_and_keeps_its_data(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = serving_note.leave(settings, "http://127.0.0.1:8765")
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o077 == 0
    for url in ("http://localhost:8765", "http://127.0.0.1:8765/", "127.0.0.1:8765"):  # loopback names are one host
        note = serving_note.find(settings, url)
        assert note is not None and note.home == (tmp_path / "data" / ".vsm").resolve()
        assert note.database_url == "" and note.pid == os.getpid()  # the default SQLite file under home
    assert serving_note.find(settings, "http://127.0.0.1:8766") is None
    serving_note.remove(path)
    assert not path.exists() and serving_note.find(settings, "http://127.0.0.1:8765") is None


def test_a_relative_sqlite_url_is_written_as_another_folder_must_read_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = _settings(tmp_path, database_url="sqlite+aiosqlite:///elsewhere/vsm.db")
    serving_note.leave(settings, "http://127.0.0.1:9000")
    note = serving_note.find(settings, "http://127.0.0.1:9000")
    assert note is not None and note.database_url == f"sqlite+aiosqlite:///{tmp_path / 'elsewhere' / 'vsm.db'}"
    pg = _settings(tmp_path, database_url="postgresql+asyncpg://vsm_app@127.0.0.1:5432/test",
                   migration_database_url="postgresql+asyncpg://vsm@127.0.0.1:5432/test")
    serving_note.leave(pg, "http://127.0.0.1:9001")
    note = serving_note.find(pg, "http://127.0.0.1:9001")
    assert note is not None and note.database_url.startswith("postgresql+asyncpg://vsm_app@")
    assert note.migration_database_url.startswith("postgresql+asyncpg://vsm@")


def test_a_note_of_a_process_that_is_gone_is_ignored_and_a_newer_note_is_not_removed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = serving_note.leave(settings, "http://127.0.0.1:8765")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, "pid": int(gone.stdout)}))  # a server killed with SIGKILL
    assert serving_note.find(settings, "http://127.0.0.1:8765") is None
    serving_note.remove(path)
    assert path.exists()  # not this process's note: a newer server may own the address


def test_files_that_are_not_notes_are_skipped(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "rt").mkdir(parents=True)
    (tmp_path / "rt" / "junk.json").write_text("{not json")
    (tmp_path / "rt" / "other.json").write_text(json.dumps({"url": 3}))
    assert serving_note.find(settings, "http://127.0.0.1:8765") is None
    serving_note.leave(settings, "http://127.0.0.1:8765")
    assert serving_note.find(settings, "http://127.0.0.1:8765") is not None


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_another_users_note_is_not_trusted(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = serving_note.leave(settings, "http://127.0.0.1:8765")
    os.chown(path, 4242, -1)  # planted in a shared runtime folder by someone else
    assert serving_note.find(settings, "http://127.0.0.1:8765") is None
