"""The executors' heartbeat table is created once however many processes start on one home at
the same moment (vsm_mcp/durable/executors.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from vsm_mcp.durable.executors import ExecutorRegistry


def test_a_table_created_by_another_process_after_the_check_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'dbos.sqlite'}"
    first, second = ExecutorRegistry(url, "a", "serve"), ExecutorRegistry(url, "b", "serve")

    def stale(*args: Any, **kwargs: Any) -> bool:
        return False  # what the second process saw: no table yet; the first creates it right after

    first.ensure_table()
    monkeypatch.setattr(second._engine.dialect, "has_table", stale)
    second.ensure_table()  # raised "table vsm_executors already exists" before
    monkeypatch.undo()
    first.beat()
    second.beat()
    with sa.create_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM vsm_executors")).scalar() == 2
