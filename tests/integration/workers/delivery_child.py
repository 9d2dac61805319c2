"""A process that runs the notifier on the durable spine and asks for one delivery, then
serves until killed (tests/integration/workers/test_crash.py SIGKILLs it and starts it again).

Settings come from the environment (VSM_HOME, VSM_TELEGRAM_API_BASE …); the delivery from
``TEST_DELIVERY`` (JSON keyword arguments of ``jobs.enqueue_delivery``). Enqueuing it again after
a restart is a no-op (same workflow id); DBOS recovers the interrupted one at launch.
"""

from __future__ import annotations

import asyncio
import json
import os

from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.durable import Spine
from vsm_mcp.workers import jobs
from vsm_mcp.workers.runtime import Workers


async def main() -> None:
    settings = load_settings()
    ctx = ServerContext.create(settings)
    async with Spine(settings, role="worker").running(), Workers(ctx, roles=["notify"]).running():
        await jobs.enqueue_delivery(**json.loads(os.environ["TEST_DELIVERY"]))
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
