"""CLI log lines: a library's logged traceback is one line unless --debug (no traceback to a user)."""

from __future__ import annotations

import logging
import sys

import pytest

from vsm_mcp.cli.common import DEBUG, OneLineLogs


def record_with_exception() -> logging.LogRecord:
    try:
        raise RuntimeError("rollback cancelled\n  while returning the connection")
    except RuntimeError:
        info = sys.exc_info()
    return logging.LogRecord("sqlalchemy.pool", logging.ERROR, __file__, 1, "Exception during reset", None, info)


def test_exception_is_one_line_without_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DEBUG, "on", False)
    text = OneLineLogs("%(levelname)s %(name)s: %(message)s").format(record_with_exception())
    assert text == ("ERROR sqlalchemy.pool: Exception during reset "
                    "(RuntimeError: rollback cancelled while returning the connection)")


def test_debug_keeps_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DEBUG, "on", True)
    text = OneLineLogs("%(message)s").format(record_with_exception())
    assert text.startswith("Exception during reset\nTraceback (most recent call last):")
