"""An HTTP server on a daemon thread, on a loopback address with an ephemeral port: the generated
content site, a built static site, the SSRF tests' listeners. Stopped (and its socket closed) on exit."""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@contextmanager
def serve_http(handler: Callable[..., BaseHTTPRequestHandler], host: str = "127.0.0.1",
               name: str = "test-http") -> Iterator[str]:
    """Serve ``handler`` on ``host`` (IPv4 or IPv6 loopback); yields the base URL."""

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True  # a client that keeps its connection open does not hold up shutdown

    server = Server((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://{f'[{host}]' if ':' in host else host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve the files under ``root`` (a built static site); yields the base URL."""
    with serve_http(functools.partial(_QuietFiles, directory=str(root)), name="static-site") as url:
        yield url
