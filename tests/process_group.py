"""A child process in its own process group, stopped with the group: SIGTERM, then SIGKILL after
``grace`` seconds — so a server and whatever it started go together, even when it hangs. For
tests and benchmarks that run servers as real processes."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

from tests.procs import stop


@contextlib.contextmanager
def process_group(cmd: list[str], *, grace: float, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        stop(proc, timeout=grace)
