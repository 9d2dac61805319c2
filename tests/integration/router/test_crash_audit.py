"""Acceptance (issue 19): SIGKILL the router during 1,000 calls; after a restart every call the
client saw answered has its episode. Counted by trace id: each call carries its own
``traceparent``, and the episode records the trace id.

Runs the real ``vsm-mcp serve`` (uvicorn, hot lane) in its own process group, with the default
rate limits (an agent's burst of 1,000 calls at concurrency 8 must pass them).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port
from tests.procs import stop, wait_ready

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = "upstreams:\n  - {name: b, kind: builtin, target: 'tests.integration.router.upstream_server:build_builtin'}\n"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json",
           "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "b__add"}
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
CALLS, CONCURRENCY, KILL_AFTER = 1000, 8, 400


def start(home: Path, port: int, manifest: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_") or k.startswith("VSM_TEST_")}
    env.update(VSM_HOME=str(home), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True",
               VSM_EMBEDDER="hash")
    with (home.parent / "router.log").open("ab") as log:  # both runs, for the message of a failed start-up
        return subprocess.Popen(
            [sys.executable, "-c", "from vsm_mcp.cli import main; main()", "serve", "--port", str(port),
             "--manifest", str(manifest)],
            cwd=home.parent, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log,
        )


@pytest.mark.timeout(900)
async def test_sigkill_during_1000_calls_loses_no_answered_episode(tmp_path: Path) -> None:
    home, manifest, port = tmp_path / ".vsm", tmp_path / "m.yaml", free_port()
    manifest.write_text(MANIFEST)
    base = f"http://127.0.0.1:{port}"
    proc = start(home, port, manifest)
    answered: list[str] = []
    failed = 0
    try:
        await wait_ready(base, proc, tmp_path / "router.log", timeout=240)
        print("router ready; calling", flush=True)
        queue = list(range(CALLS))

        async def worker(http: httpx.AsyncClient) -> None:
            nonlocal failed
            while queue:
                i = queue.pop()
                trace = secrets.token_hex(16)
                body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                        "params": {"name": "b__add", "arguments": {"a": i, "b": 1}, "_meta": ENVELOPE}}
                try:
                    r = await http.post(f"{base}/mcp", json=body,
                                        headers={**HEADERS, "traceparent": f"00-{trace}-{secrets.token_hex(8)}-01"})
                    ok = r.status_code == 200 and r.json()["result"]["structuredContent"]["result"] == i + 1
                except (httpx.HTTPError, KeyError, ValueError):
                    ok = False
                if ok:
                    answered.append(trace)
                    if len(answered) == KILL_AFTER:
                        os.killpg(proc.pid, signal.SIGKILL)
                else:
                    failed += 1

        async with httpx.AsyncClient(timeout=10) as http:
            await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
        print(f"calls done: answered {len(answered)}, failed {failed}", flush=True)
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        assert KILL_AFTER <= len(answered) < CALLS and failed > 0
        journals = list((home / "journal").glob("episodes.*.jsonl"))
        assert journals, "the killed router left no journal"
        # Restart: the journal of the dead process is replayed into the database.
        proc = start(home, port, manifest)
        await wait_ready(base, proc, tmp_path / "router.log", timeout=240)
        print("restarted router ready", flush=True)
        recorded: set[str] = set()
        async with httpx.AsyncClient(timeout=30) as http:
            cursor = None
            for _ in range(20):  # 1,000 per page: a few pages at most
                params = {"limit": 1000, "tool": "b__add", **({"cursor": cursor} if cursor else {})}
                page = (await http.get(f"{base}/v1/audit", params=params)).json()
                recorded |= {e["trace_id"] for e in page["episodes"]}
                cursor = page["next_cursor"]
                if not cursor:
                    break
        missing = set(answered) - recorded
        print(f"answered {len(answered)}, failed {failed}, episodes {len(recorded)}, missing {len(missing)}")
        assert not missing, f"{len(missing)} of {len(answered)} answered calls have no episode"
    finally:
        stop(proc, timeout=30)
