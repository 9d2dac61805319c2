"""Real processes for tests, each started in a session of its own (``start_new_session=True``) so
that stopping its process group stops what it started too (stdio upstreams, workers)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.polling import eventually

# The console script of this virtualenv, for the tests that run the CLI as users do.
VSM = Path(sys.executable).with_name("vsm-mcp")


def tail(log: Path | None, chars: int = 3000) -> str:
    """The end of a process's log, for an assertion message ('' before the log exists)."""
    return log.read_text(errors="replace")[-chars:] if log is not None and log.exists() else ""


def _signal(proc: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int) -> None:
    """``sig`` to the process group; to the process alone when it leads no group (started without
    a session of its own), so that a stop never waits for a process nobody signalled."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        if proc.poll() is None:
            proc.send_signal(sig)


def kill(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGKILL the process group; reap the process."""
    _signal(proc, signal.SIGKILL)
    proc.wait()


def stop(*procs: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 20) -> None:
    """SIGTERM each process group (a clean shutdown, all at once); SIGKILL what still runs after
    ``timeout`` seconds."""
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(proc)


def _exited(proc: subprocess.Popen[bytes], log: Path | None, when: str = "during start-up") -> AssertionError:
    return AssertionError(f"process exited with {proc.returncode} {when}:\n{tail(log)}")


async def until(check: Callable[[], Any], proc: subprocess.Popen[bytes], log: Path | None = None, *,
                timeout: float = 60, what: str = "condition", interval: float = 0.05) -> None:
    """:func:`tests.polling.eventually` for a condition a process brings about: fail at once, with
    its log, when the process exits meanwhile."""

    async def check_while_alive() -> bool:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if not value and proc.poll() is not None:
            raise _exited(proc, log, "while the test waited for " + what)
        return bool(value)

    await eventually(check_while_alive, timeout, what, interval)


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path | None = None, *, timeout: float = 90,
                     path: str = "/readyz", **client: object) -> None:
    """Poll ``url + path`` until it answers 200; fail at once when the process exits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(timeout=5, **client) as http:  # type: ignore[arg-type]
        while loop.time() < deadline:
            if proc.poll() is not None:
                raise _exited(proc, log)
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url + path)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url}{path} not ready within {timeout:.0f} s:\n{tail(log)}")


def wait_ready_sync(url: str, proc: subprocess.Popen[bytes], log: Path | None = None, *, timeout: float = 90,
                    path: str = "/readyz") -> None:
    """:func:`wait_ready` for a test without an event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _exited(proc, log)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url}{path} not ready within {timeout:.0f} s:\n{tail(log)}")


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path | None = None, *, timeout: float = 60) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``; fail when the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _exited(proc, log)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s:\n{tail(log)}")
