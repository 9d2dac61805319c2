"""A process that syncs a Drive connector, for the SIGKILL test (``python -m`` this module).

``first <home> <base_url>``: add the connector ``gd``, sync it once (the start page token), print
``ready``, and on a line from stdin start the next sync and keep running until killed.
``resume <home>``: start the stack again (DBOS resumes the killed sync at launch: same role on
SQLite), wait for the sync to end and print the connector's status as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.integration.connectors.conftest import connector_settings, open_stack


async def main(mode: str, home: str, base: str = "") -> None:
    settings = connector_settings(Path(home), connector_page_size=50)
    async for stack in open_stack(settings):
        if mode == "first":
            await stack.call("drive__connector_add", name="gd", type="gdrive", base_url=base,
                             credentials={"token": "${GDRIVE_TEST_TOKEN}"})
            await stack.sync("drive", "gd")
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            await stack.call("drive__connector_sync", name="gd")
            print("started", flush=True)
            await asyncio.sleep(3600)
        else:
            for _ in range(1200):
                st = await stack.call("drive__connector_status", name="gd")
                if st["state"] != "running":
                    break
                await asyncio.sleep(0.1)
            print(json.dumps(st), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
