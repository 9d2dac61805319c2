"""``vsm-mcp worker``: a process that works the durable queues (plans, worker jobs).

It runs what ``serve`` runs minus HTTP: the manifests' upstreams behind the same dispatcher
(grants, policy, limits, audit), so a plan step called from a worker is the same call as from
the router, plus the durable spine listening to ``--queues``. Start as many as needed on the
PostgreSQL system database ``serve`` uses; a worker that dies has its workflows taken over by
the others (vsm_mcp/durable/executors.py).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from vsm_mcp.cli.common import DbUrl, ManifestOpt, err, handle_errors, router_settings, run_async
from vsm_mcp.config import Settings
from vsm_mcp.errors import ConfigError


@handle_errors
def worker(
    queues: Annotated[
        str | None, typer.Option("--queues", help="Comma-separated durable queues to work (default: every declared one).")
    ] = None,
    manifest: ManifestOpt = None,
    database_url: DbUrl = None,
) -> None:
    """Work the durable queues (plans, background jobs) beside `vsm-mcp serve`, sharing its
    PostgreSQL database. Stops cleanly on SIGTERM or Ctrl-C; its unfinished work is resumed by
    another process."""
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    settings = router_settings(manifest, database_url)
    run_async(run_worker(settings, names))


async def run_worker(settings: Settings, queues: list[str] | None) -> None:
    from router.local import running_router

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_router(settings, durable_role="worker", durable_queues=queues) as (runtime, _principal):
        spine = runtime.spine
        if spine is None:
            raise ConfigError("the mounted servers declare no durable queues: this worker would have nothing to do")
        listening = ", ".join(queues) if queues else "all queues"
        err.print(f"vsm-mcp worker {spine.executor_id} working {listening} (system database: {spine.redacted_url})")
        await stop.wait()
