"""Start-up of ``vsm-mcp serve`` as an operator meets it: bind first, check services, banner last.

* The port is bound before anything else runs, so a port in use is one line and exit 2 at once
  (it used to be found after a whole start-up: migrations, upstreams, then ``[Errno 98]``).
* The bus is tried before the app starts: unreachable is one line naming ``VSM_BUS_URL`` (an
  unreachable RabbitMQ used to print 77 lines with three tracebacks from the lifespan).
* The banner is printed once uvicorn listens and the lifespan has finished, so
  ``vsm-mcp serving on …`` is true when it appears.
* A start-up failure inside the app's lifespan is one line too; ``--debug`` keeps the traceback.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import anyio
import uvicorn

from vsm_mcp.config import Settings
from vsm_mcp.errors import ConfigError, VsmError


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or ConfigError naming the setting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use (VSM_PORT / --port): stop what listens there or pick another"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port} (VSM_HOST / VSM_PORT): {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def check_bus(settings: Settings, timeout: float = 10.0) -> None:
    """Connect to the bus once (AMQP only); ConfigError naming VSM_BUS_URL when it cannot."""
    if settings.bus_url.startswith("memory"):
        return
    from vsm_mcp.bus import make_bus
    from vsm_mcp.cli.common import redact

    async def probe() -> None:
        bus = make_bus(settings.bus_url)
        try:
            with anyio.fail_after(timeout):
                await bus.start()
        finally:
            with anyio.CancelScope(shield=True):
                await bus.aclose()

    quiet = [logging.getLogger(name) for name in ("aiormq", "aio_pika")]  # they log each failed attempt
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)
    try:
        anyio.run(probe)
    except TimeoutError:
        raise ConfigError(f"cannot reach the bus at VSM_BUS_URL={redact(settings.bus_url)}: no answer within {timeout:g}s") from None
    except VsmError as exc:
        raise ConfigError(f"cannot reach the bus at VSM_BUS_URL={redact(settings.bus_url)}: {_cause(exc.message)}") from None
    except Exception as exc:
        raise ConfigError(
            f"cannot reach the bus at VSM_BUS_URL={redact(settings.bus_url)}: {type(exc).__name__}: {_cause(str(exc))}"
        ) from None
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def _cause(text: str) -> str:
    return " ".join(text.split())[:300] or "unknown error"


class _ShortName(logging.Filter):
    """uvicorn logs its start, stop and failures as "uvicorn.error": named so, an INFO line about a
    start-up reads like an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.name = record.name.replace("uvicorn.error", "uvicorn")
        return True


class _OneLine(logging.Filter):
    """On uvicorn's error logger: keep the failure's message, drop its traceback (``--debug`` keeps it)."""

    def __init__(self) -> None:
        super().__init__()
        self.failure = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            self.failure = f"{type(exc).__name__}: {_cause(str(exc))}"
            return False  # reported once, in one line, by serve()
        if "Application startup failed" in record.getMessage():
            return False
        return True


class BannerServer(uvicorn.Server):
    """uvicorn's server that prints the banner once it listens and the lifespan is done."""

    def __init__(
        self, config: uvicorn.Config, banner: str, say: Any,
        on_ready: Callable[[], None] | None = None, on_stop: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.banner = banner
        self.say = say
        self.on_ready = on_ready
        self.on_stop = on_stop

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.say(self.banner)
            if self.on_ready is not None:
                self.on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Here and not after run(): uvicorn re-raises a captured SIGTERM/SIGINT once it has
        # stopped, which ends the process before any code after run() would execute.
        try:
            await super().shutdown(sockets=sockets)
        finally:
            if self.on_stop is not None:
                self.on_stop()


def run_server(
    app: Any, sock: socket.socket, settings: Settings, banner: str, say: Any, *, http: Any, debug: bool,
    on_ready: Callable[[], None] | None = None, on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on the bound ``sock``; a lifespan failure becomes one VsmError line.
    ``on_ready`` runs once it listens and the lifespan is done, after the banner; ``on_stop``
    when it shuts down."""
    # ws="none": no route speaks WebSocket and the gate checks HTTP requests only, so an Upgrade
    # stays a plain HTTP request (uvicorn picks a WebSocket protocol whenever the `websockets`
    # package is installed, and the relay's WebSocket sources need it installed).
    # log_config=None: uvicorn's records go to the CLI's one handler, in our format ("12:00:01
    # INFO    uvicorn: Application startup complete."), not in a second format of its own.
    config = uvicorn.Config(
        app, log_level=settings.log_level, lifespan="on", http=http, ws="none", log_config=None,
        ssl_certfile=settings.ssl_certfile or None, ssl_keyfile=settings.ssl_keyfile or None,  # VSM_SSL_*: HTTPS
    )
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ShortName) for f in logger.filters):
            logger.addFilter(_ShortName())
    one_line = _OneLine()
    if not debug:
        logging.getLogger("uvicorn.error").addFilter(one_line)
    server = BannerServer(config, banner, say, on_ready, on_stop)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise VsmError(f"start-up failed: {one_line.failure or 'see the log above'}")
