"""A free loopback port for a test's server (bound and released: a server started right after
gets it; the tests that race for ports retry their start-up)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
