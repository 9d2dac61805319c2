"""`vsm-mcp ingest URL|PATH…` — ingest web pages and local files into semantic containers.

Runs the router in-process (the manifests' servers, content among them) and calls the content
tools through the dispatcher as the local principal: URLs become one ingest job
(``content__ingest_url``, durable when the spine runs), files are handed over one by one
(``content__ingest_item``, source ``file:<absolute path>``). A rich progress bar shows documents,
bytes and the stage; ``--resume`` waits for jobs a killed run left behind instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vsm_mcp.cli.common import DbUrl, ManifestOpt, err, handle_errors, out, router_settings, run_async
from vsm_mcp.errors import InvalidArguments, VsmError

POLL_S = 0.25


def _files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            yield p
        else:
            raise InvalidArguments(f"{p}: no such file or directory")


def _result(res: Any, tool: str) -> dict[str, Any]:
    if res.is_error:
        text = " ".join(getattr(c, "text", "") for c in res.content)
        raise VsmError(f"{tool}: {text.removeprefix('Error executing tool ' + tool.split('__', 1)[1] + ': ')}")
    return dict(res.structured_content or {})


async def _ingest(settings: Any, urls: list[str], files: list[Path], depth: int, max_documents: int,
                  resume: bool, quiet: bool) -> list[dict[str, Any]]:
    from router.local import running_router

    # The spine makes the job durable: a killed run leaves it PENDING under this role's executor
    # id and the next `vsm-mcp ingest` (this role) resumes it at launch.
    async with running_router(settings, durable_role="ingest", durable_queues=["ingest"]) as (runtime, principal):
        async def call(tool: str, **args: Any) -> dict[str, Any]:
            return _result(await runtime.dispatcher.call_tool(principal, tool, args, source="cli"), tool)

        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[bytes]} · {task.fields[stage]} · {task.fields[failed]} failed"),
            TimeElapsedColumn(), console=err, disable=quiet, transient=False,
        ) as bar:
            results: list[dict[str, Any]] = []
            if files:
                task = bar.add_task("files", total=len(files), bytes="0 B", stage="ingest", failed=0)
                done_bytes, failed = 0, 0
                for f in files:
                    data = f.read_bytes()
                    ctype = mimetypes.guess_type(f.name)[0] or ""
                    res = await call(
                        "content__ingest_item", source=f"file:{f.resolve()}", base64=base64.b64encode(data).decode(),
                        content_type=ctype, lineage={"kind": "file", "path": str(f.resolve()), "mtime": f.stat().st_mtime},
                        job="cli",
                    )
                    done_bytes += len(data)
                    failed += res.get("status") == "failed"
                    results.append(res)
                    bar.update(task, advance=1, bytes=_size(done_bytes), failed=failed)
            jobs: list[str] = []
            if urls:
                started = await call("content__ingest_url", urls=urls, depth=depth, max_documents=max_documents)
                jobs.append(started["job"])
            if resume:
                from servers.content.jobs import pending_jobs

                jobs.extend(await pending_jobs(principal.tenant_id))
            for job in jobs:
                results.append(await _follow(call, bar, job))
            return results


async def _follow(call: Any, bar: Progress, job: str) -> dict[str, Any]:
    task = bar.add_task(f"job {job}", total=None, bytes="0 B", stage="queued", failed=0)
    while True:
        st: dict[str, Any] = await call("content__ingest_status", job=job)
        bar.update(task, completed=st.get("documents", 0), total=st.get("total") or None,
                   bytes=_size(int(st.get("bytes", 0))), stage=st.get("stage", st.get("state", "")),
                   failed=st.get("failed", 0))
        if st.get("state") in ("done", "failed"):
            return st
        await asyncio.sleep(POLL_S)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@handle_errors
def ingest(
    targets: Annotated[list[str] | None, typer.Argument(help="URLs (http/https) and local files or directories.")] = None,
    depth: Annotated[int, typer.Option(help="Follow links found in HTML pages this many hops (same host).")] = 0,
    max_documents: Annotated[int, typer.Option("--max-documents", help="Stop a crawl after this many documents.")] = 1000,
    resume: Annotated[bool, typer.Option("--resume", help="Also wait for ingest jobs a killed run left behind.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final job statuses as JSON.")] = False,
    manifest: ManifestOpt = None,
    database_url: DbUrl = None,
) -> None:
    """Ingest web pages and local files into semantic containers (fetch → normalize → containerize → index)."""
    targets = targets or []
    urls = [t for t in targets if t.startswith(("http://", "https://"))]
    files = list(_files([Path(t) for t in targets if t not in urls]))
    if not urls and not files and not resume:
        raise InvalidArguments("give at least one URL or path (or --resume)")
    settings = router_settings(manifest, database_url)
    if settings.log_level != "debug":
        import logging

        for name in ("mcp", "httpx"):  # a failed document is reported below, not as an SDK log line
            logging.getLogger(name).setLevel(logging.WARNING)
    results = run_async(_ingest(settings, urls, files, depth, max_documents, resume, as_json))
    if as_json:
        out.print(json.dumps(results, indent=2), soft_wrap=True, markup=False, highlight=False)
    else:
        for r in results:
            if "job" in r:
                out.print(f"job {r['job']}: {r.get('state')} — {r.get('documents', 0)} documents, "
                          f"{r.get('created', 0)} new versions, {r.get('unchanged', 0)} unchanged, "
                          f"{r.get('failed', 0)} failed, {r.get('chunks', 0)} chunks", markup=False)
                for f in r.get("failures", []):
                    out.print(f"  failed: {f['ref']}: {f['reason']}", markup=False)
            elif r.get("status") == "failed":
                out.print(f"failed: {r['source']}: {r.get('reason')}", markup=False)
    bad = any(r.get("state") == "failed" or r.get("status") == "failed" or r.get("failed") for r in results)
    if bad:
        raise typer.Exit(1)
