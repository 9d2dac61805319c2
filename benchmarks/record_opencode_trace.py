"""Record the LLM requests two real OpenCode processes send through vsm-mcp (issue 24), as a trace
that benchmarks/llm_cache_trace.py replays: ``benchmarks/data/llm_trace/opencode.jsonl``.

    python benchmarks/record_opencode_trace.py [--out PATH]

What runs (all on 127.0.0.1; the OpenCode CLI is ``.tools/node_modules/.bin/opencode``):

* ``vsm-mcp serve`` (a fresh home, SQLite) with the scripted model server as its one LLM model
  (``VSM_LLM_MODELS``), ``VSM_LLM_CACHE_MODE=all`` (OpenCode sends no temperature; the default
  mode would pass everything through) and the semantic cache off;
* the model: tests/scripted_model.py with a per-task plan (``respond`` below) — a deterministic
  stand-in for an LLM that behaves like a coding model: it names the conversation when asked for
  a title, then calls the task's tools one after the other (OpenCode's own ``read`` / ``grep`` /
  ``glob`` on the repository, vsm-mcp's tools over MCP) with absolute paths taken from the
  working directory in OpenCode's system prompt, then answers from the tool results;
* ripgrep on PATH (OpenCode's ``grep`` and ``glob`` run it; without it OpenCode tries to download
  it and those tools fail);
* two OpenCode processes, agents ``a`` and ``b``, run at the same time, each with its own
  configuration and key (``vsm-mcp connect opencode`` in its own folder, read via
  ``OPENCODE_CONFIG``) and its own session store (``XDG_DATA_HOME``), each running its sessions
  (``opencode run "<task>"``) one after the other in a git repository (``repo``) — agent b's
  last session in a second checkout of it (``repo-b``, a git worktree);
* between each OpenCode and vsm-mcp a recording proxy (one per agent) that keeps the exact body
  OpenCode sent to ``/v1/chat/completions`` and the ``x-vsm-cache`` answer header.

The scenario was fixed before any replay and is not tuned to a hit rate: both agents work on one
repository; agent b repeats two of a's tasks word for word (a teammate's agent or a retried
session asked the same thing), rewords one (label ``equivalent``), asks the same question about
another file (label ``near_miss``), has one task of its own, and runs one of a's tasks in the
other checkout.

Each line after the header is one request: ``agent``, ``seq`` (arrival order at the agent's
proxy), ``task``, ``checkout``, ``intent`` — requests with the same intent need the same answer:
title requests by the task's meaning (a rewording shares it), agent turns by meaning, checkout,
step and a digest of the tool results so far — ``label`` (title | first_turn | followup, or the
task's equivalent | near_miss), ``cache_when_recorded`` and ``request`` (OpenCode's body;
``{"role": "system", "ref": NAME}`` and ``"tools": {"ref": NAME}`` stand for the header's
``system`` / ``tools`` entries: every session repeats the same 10 KB prompt and 30 KB of tools).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from tests.e2e.gateway import Gateway  # noqa: E402
from tests.e2e.test_opencode import OPENCODE, opencode_env  # noqa: E402
from tests.scripted_model import Script, scripted_model  # noqa: E402

OUT = ROOT / "benchmarks" / "data" / "llm_trace" / "opencode.jsonl"
WORK = Path("/tmp/vsm-llm-trace")  # fixed, so paths in the trace do not change between recordings
TITLE_PROMPT = "You are a title generator"


@dataclass(frozen=True)
class Task:
    text: str
    meaning: str  # tasks with one meaning need the same answer
    steps: tuple[tuple[str, dict[str, Any]], ...]
    answer: str
    label: str = ""  # equivalent | near_miss: the labelled subset


TASKS: dict[str, Task] = {
    "explain-cache": Task("explain what src/cache.py does", "explain-cache",
                          (("read", {"filePath": "{cwd}/src/cache.py"}),), "src/cache.py is a TTL cache:"),
    "explain-cache-reworded": Task("what does src/cache.py do?", "explain-cache",
                                   (("read", {"filePath": "{cwd}/src/cache.py"}),), "src/cache.py is a TTL cache:",
                                   "equivalent"),
    "explain-retry": Task("explain what src/retry.py does", "explain-retry",
                          (("read", {"filePath": "{cwd}/src/retry.py"}),), "src/retry.py retries calls:", "near_miss"),
    "find-retries": Task("find where retries are implemented and which exceptions are retried", "find-retries",
                         (("grep", {"pattern": "retry", "include": "*.py"}), ("read", {"filePath": "{cwd}/src/retry.py"})),
                         "Retries live in src/retry.py:"),
    "list-python": Task("list the python files in this repository", "list-python",
                        (("glob", {"pattern": "**/*.py"}),), "The Python files:"),
    "vsm-store-tools": Task("which vsm tools can store files?", "vsm-store-tools",
                            (("vsm_find_tools", {"query": "store files in a bucket"}),), "These vsm tools store files:"),
    "bucket-usage": Task("how much is stored in the bucket named notes?", "bucket-usage",
                         (("vsm_storage__bucket_usage", {"bucket": "notes"}),), "The bucket notes holds:"),
}

SCENARIO: dict[str, list[tuple[str, str]]] = {  # agent -> (checkout, task) in order
    "a": [("repo", "explain-cache"), ("repo", "find-retries"), ("repo", "vsm-store-tools"), ("repo", "list-python")],
    "b": [("repo", "find-retries"), ("repo", "explain-cache-reworded"), ("repo", "explain-retry"),
          ("repo", "bucket-usage"), ("repo", "vsm-store-tools"), ("repo-b", "list-python")],
}

FILES = {
    "README.md": "# tinyhttp\n\nA small HTTP client with a TTL cache and retries.\n",
    "src/__init__.py": "",
    "src/cache.py": (
        '"""A TTL cache for GET responses."""\n\nimport time\n\n\nclass TTLCache:\n'
        "    def __init__(self, ttl: float = 60.0) -> None:\n        self.ttl = ttl\n        self._data: dict[str, tuple[float, bytes]] = {}\n\n"
        "    def get(self, key: str) -> bytes | None:\n        hit = self._data.get(key)\n"
        "        if hit is None or hit[0] < time.monotonic():\n            return None\n        return hit[1]\n\n"
        "    def put(self, key: str, value: bytes) -> None:\n        self._data[key] = (time.monotonic() + self.ttl, value)\n"
    ),
    "src/retry.py": (
        '"""Retry a call on transient errors with exponential backoff."""\n\nimport time\n\n'
        "RETRIED = (ConnectionError, TimeoutError)\n\n\n"
        "def retry(fn, attempts: int = 3, delay: float = 0.1):\n    for i in range(attempts):\n        try:\n            return fn()\n"
        "        except RETRIED:\n            if i == attempts - 1:\n                raise\n            time.sleep(delay * 2**i)\n"
    ),
    "src/client.py": (
        '"""The client: cache first, then the network with retry."""\n\nfrom src.cache import TTLCache\nfrom src.retry import retry\n\n'
        "cache = TTLCache()\n\n\ndef get(url: str, fetch) -> bytes:\n    body = cache.get(url)\n    if body is None:\n"
        "        body = retry(lambda: fetch(url))\n        cache.put(url, body)\n    return body\n"
    ),
    "tests/test_cache.py": "from src.cache import TTLCache\n\n\ndef test_put_get():\n    c = TTLCache()\n    c.put('k', b'v')\n    assert c.get('k') == b'v'\n",
}


# --- the model ----------------------------------------------------------------------------------

def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def task_of(body: dict[str, Any]) -> Task | None:
    users = [_text(m.get("content")) for m in body.get("messages") or [] if m.get("role") == "user"]
    # Longest text first: no task's text is inside another's, but be safe about it.
    for task in sorted(TASKS.values(), key=lambda t: -len(t.text)):
        if any(task.text in u for u in users):
            return task
    return None


def is_title(body: dict[str, Any]) -> bool:
    msgs = body.get("messages") or []
    return bool(msgs) and msgs[0].get("role") == "system" and _text(msgs[0].get("content")).startswith(TITLE_PROMPT)


def working_dir(body: dict[str, Any]) -> str:
    for m in body.get("messages") or []:
        for line in _text(m.get("content")).splitlines() if m.get("role") == "system" else []:
            if "Working directory:" in line:
                return line.split("Working directory:", 1)[1].strip()
    return ""


def respond(script: Script, body: dict[str, Any]) -> dict[str, Any]:
    """A coding model's behaviour, scripted: title, then the task's tool calls, then an answer."""
    task = task_of(body)
    if task is None:
        return {"role": "assistant", "content": "I can't tell which task this is."}
    if is_title(body):
        return {"role": "assistant", "content": task.text[:1].upper() + task.text[1:].rstrip("?")}
    messages = body.get("messages") or []
    results = [_text(m.get("content")) for m in messages if m.get("role") == "tool"]
    if len(results) < len(task.steps):
        name, args = task.steps[len(results)]
        offered = {t.get("function", {}).get("name") for t in body.get("tools") or []}
        if name not in offered:
            return {"role": "assistant", "content": f"the tool {name} is not offered"}
        arguments = json.dumps(args).replace("{cwd}", working_dir(body))
        call = {"id": f"call_{len(script.requests)}", "type": "function", "function": {"name": name, "arguments": arguments}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": f"{task.answer}\n\n{results[-1][:400]}"}


# --- the recording proxy -------------------------------------------------------------------------

@dataclass
class Tap:
    """Forwards OpenCode's LLM requests to vsm-mcp and keeps each body and its cache header."""

    agent: str
    target: str
    current: tuple[str, str] = ("", "")  # (checkout, task) of the session running now
    rows: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        client: dict[str, httpx.AsyncClient] = {}

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with httpx.AsyncClient(timeout=300) as http:
                client["http"] = http
                yield

        def headers(request: Request) -> dict[str, str]:
            return {k: v for k, v in request.headers.items() if k in ("authorization", "content-type", "cache-control")}

        async def chat(request: Request) -> Response:
            raw = await request.body()
            checkout, task = self.current
            row = {"agent": self.agent, "checkout": checkout, "task": task, "user_agent": request.headers.get("user-agent"),
                   "request": json.loads(raw)}
            self.rows.append(row)
            http = client["http"]
            upstream = await http.send(http.build_request("POST", f"{self.target}/v1/chat/completions", content=raw,
                                                          headers=headers(request)), stream=True)
            row["cache_when_recorded"] = upstream.headers.get("x-vsm-cache", "")

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in upstream.aiter_raw():
                        yield chunk
                finally:
                    await upstream.aclose()

            return StreamingResponse(relay(), status_code=upstream.status_code,
                                     media_type=upstream.headers.get("content-type"))

        async def models(request: Request) -> Response:
            r = await client["http"].get(f"{self.target}/v1/models", headers=headers(request))
            return Response(r.content, r.status_code, media_type="application/json")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                                 Route("/v1/models", models, methods=["GET"])], lifespan=lifespan)

    @contextmanager
    def serve(self) -> Iterator[str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app(), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


# --- the run -------------------------------------------------------------------------------------

def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=trace", "-c", "user.email=trace@example.invalid", *args], cwd=cwd,
                   check=True, capture_output=True)


def make_repository(work: Path) -> None:
    repo = work / "repo"
    for rel, text in FILES.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "tinyhttp")
    _git(repo, "worktree", "add", "-q", str(work / "repo-b"), "-b", "other")


def agent_env(gw: Gateway, work: Path, name: str, tap_url: str) -> dict[str, str]:
    folder = work / f"agent-{name}"
    folder.mkdir()
    out = subprocess.run([*gw.cli_argv(), "connect", "opencode", "--url", gw.url], cwd=folder, env=gw.env,
                         capture_output=True, text=True, timeout=120)  # the default scopes, as a new user gets
    if out.returncode != 0:
        raise SystemExit(f"vsm-mcp connect opencode failed: {out.stderr.strip()}")
    config = json.loads((folder / "opencode.json").read_text())
    config["mcp"]["vsm-local"]["enabled"] = False  # the remote entry is the one under test; a local router is slow
    config["provider"]["vsm"]["options"]["baseURL"] = f"{tap_url}/v1"  # through the recording proxy
    (folder / "opencode.json").write_text(json.dumps(config, indent=2))
    return opencode_env(OPENCODE_CONFIG=str(folder / "opencode.json"), XDG_DATA_HOME=str(folder / "data"))


def run_agent(tap: Tap, env: dict[str, str], work: Path, failures: list[str]) -> None:
    for checkout, name in SCENARIO[tap.agent]:
        tap.current = (checkout, name)
        run = subprocess.run([str(OPENCODE), "run", TASKS[name].text], cwd=work / checkout, env=env,
                             capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        if run.returncode != 0 or TASKS[name].answer not in run.stdout + run.stderr:
            failures.append(f"agent {tap.agent} task {name}: rc {run.returncode}\n{(run.stdout + run.stderr)[-2000:]}")


def record(work: Path) -> tuple[list[Tap], dict[str, Any]]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    make_repository(work)
    with scripted_model("", {}, respond=respond) as (model_url, script):
        gw = Gateway(work, model_url)
        gw.env["VSM_LLM_CACHE_MODE"] = "all"
        gw.cli("migrate")
        admin = gw.cli("keys", "create", "--tenant", "default", "--scopes", "*").splitlines()[-1].strip()
        gw.start()
        try:
            r = httpx.post(f"{gw.url}/v1/tools/storage__bucket_create/call", headers={"authorization": f"Bearer {admin}"},
                           json={"arguments": {"name": "notes"}}, timeout=60)
            if r.status_code != 200 or r.json().get("isError"):
                raise SystemExit(f"could not create the bucket notes: {r.text[:300]}")
            taps = [Tap(a, gw.url) for a in SCENARIO]
            failures: list[str] = []
            with taps[0].serve() as url_a, taps[1].serve() as url_b:
                envs = [agent_env(gw, work, t.agent, u) for t, u in zip(taps, (url_a, url_b), strict=True)]
                threads = [threading.Thread(target=run_agent, args=(t, e, work, failures)) for t, e in zip(taps, envs, strict=True)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
            failures += [f"agent {t.agent} task {r['task']}: a tool failed: {m['content'][:200]}"
                         for t in taps for r in t.rows for m in r["request"]["messages"]
                         if m.get("role") == "tool" and ("failed" in str(m.get("content"))[:80]
                                                         or str(m.get("content")).startswith("Error"))]
            if failures:
                raise SystemExit("\n\n".join(failures))
            stats = httpx.post(f"{gw.url}/v1/tools/llm__llm_cache_stats/call", headers={"authorization": f"Bearer {admin}"},
                               json={"arguments": {}}, timeout=60).json()["content"][0]["text"]
        finally:
            gw.stop()
        return taps, {"provider_calls": len(script.requests), "llm_cache_stats": json.loads(stats)}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def to_trace(taps: list[Tap], recording: dict[str, Any]) -> list[dict[str, Any]]:
    systems: dict[str, str] = {}  # text -> ref
    toolsets: dict[str, str] = {}  # digest -> ref
    system_out: dict[str, str] = {}
    tools_out: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for tap in taps:
        for seq, row in enumerate(tap.rows):
            body = row["request"]
            task = TASKS[row["task"]]
            title = is_title(body)
            for m in body["messages"]:
                if m.get("role") == "system" and isinstance(m.get("content"), str):
                    ref = systems.setdefault(m["content"], f"s{len(systems) + 1}")
                    system_out[ref] = m.pop("content")
                    m["ref"] = ref
            if isinstance(body.get("tools"), list):
                ref = toolsets.setdefault(_digest(body["tools"]), f"t{len(toolsets) + 1}")
                tools_out[ref] = body["tools"]
                body["tools"] = {"ref": ref}
            results = [m.get("content") for m in body["messages"] if m.get("role") == "tool"]
            if title:
                intent, label = f"title:{task.meaning}", "title"
            else:
                intent = f"turn:{task.meaning}:{row['checkout']}:{len(results)}:{_digest(results)}"
                label = "followup" if results else "first_turn"
            rows.append({"agent": row["agent"], "seq": seq, "task": row["task"], "checkout": row["checkout"],
                         "intent": intent, "label": task.label or label,
                         "cache_when_recorded": row.get("cache_when_recorded", ""), "request": body})
    version = subprocess.run([str(OPENCODE), "--version"], capture_output=True, text=True, env=opencode_env()).stdout.strip()
    header = {
        "kind": "header", "generator": "benchmarks/record_opencode_trace.py", "recorded": time.strftime("%Y-%m-%d"),
        "opencode": version, "user_agent": next((r["user_agent"] for t in taps for r in t.rows), ""),
        "model": "scripted", "cache_mode": "all",
        "how": ("two real OpenCode processes (own config, key and session store each) ran their sessions at the same "
                "time through one vsm-mcp serve; a recording proxy per agent kept every /v1/chat/completions body "
                "OpenCode sent; the model was tests/scripted_model.py with the per-task plans of this generator"),
        "work_dir": str(WORK), "tasks": {k: {"text": t.text, "meaning": t.meaning, "label": t.label,
                                             "steps": [s[0] for s in t.steps]} for k, t in TASKS.items()},
        "scenario": SCENARIO, "recording": recording, "system": system_out, "tools": tools_out,
    }
    return [header, *rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not OPENCODE.exists():
        raise SystemExit(f"{OPENCODE} not found: make setup installs opencode-ai under .tools")
    if shutil.which("rg") is None:  # else OpenCode downloads it (no network here) and grep/glob fail
        raise SystemExit("OpenCode's grep and glob tools need ripgrep on PATH (Debian: apt-get install ripgrep)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    taps, recording = record(WORK)
    lines = to_trace(taps, recording)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines),
                        encoding="utf-8")
    print(f"wrote {args.out}: {len(lines) - 1} requests "
          f"({', '.join(f'{t.agent}: {len(t.rows)}' for t in taps)}); provider calls {recording['provider_calls']}")


if __name__ == "__main__":
    main()
