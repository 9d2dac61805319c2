"""CLI commands of the tool registry: ``vsm-mcp tools list|search`` and ``vsm-mcp bench retrieval``.

Mounted by vsm_mcp/cli.py (the composition root). Heavy imports (the router, numpy, the model)
happen inside the commands so ``vsm-mcp --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from vsm_mcp.errors import ConfigError, InvalidArguments, VsmError

if TYPE_CHECKING:
    from router.registry.index import SearchHit, SearchResult

tools_app = typer.Typer(help="List and search the tools of every upstream (the semantic registry).", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that run inside the CLI.", no_args_is_help=True)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

ManifestOpt = Annotated[
    list[str] | None,
    typer.Option("--manifest", "-m", help="Manifest file or directory (repeatable); overrides VSM_MANIFESTS."),
]


T = TypeVar("T")


def handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """VsmError → one red line on stderr and a non-zero exit, like every vsm-mcp command."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except VsmError as exc:
            err.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
            raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None

    return wrapper


@contextmanager
def embedding_progress(label: str, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr fed by ``ToolRegistry(progress=...)`` callbacks."""
    if not enabled:
        yield None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _hits_table(hits: list[SearchHit]) -> Table:
    table = Table("score")
    table.add_column("tool", no_wrap=True)  # a public name must stay copy-pasteable
    table.add_column("description")
    for hit in hits:
        desc = " ".join(hit.record.description.split())
        table.add_row(f"{hit.score:.3f}", hit.record.public_name, desc[:120] + ("…" if len(desc) > 120 else ""))
    return table


async def _with_registry(settings: Any, query: str | None, **search: Any) -> tuple[list[Any], SearchResult | None]:
    from router.local import running_router
    from vsm_mcp.auth import grants

    async with running_router(settings) as (runtime, principal):
        entries = [e for e in runtime.catalog.tools() if grants(principal.scopes, e.tags)]
        if query is None:
            return entries, None
        tool_search = runtime.tool_search
        with embedding_progress("embedding tools", enabled=err.is_terminal) as update:
            tool_search.registry.progress = update
            await tool_search.refresh()
        return entries, await tool_search.find(principal, query, **search)


@tools_app.command("list")
@handle_errors
def tools_list(
    server: Annotated[str | None, typer.Option("--server", help="Only this upstream's tools.")] = None,
    manifest: ManifestOpt = None,
) -> None:
    """List every tool of every upstream (public name, availability, tags)."""
    from vsm_mcp.cli.common import router_settings as _router_settings
    from vsm_mcp.cli.common import run_async

    settings = _router_settings(manifest)
    entries, _ = run_async(_with_registry(settings, None))
    table = Table()
    table.add_column("tool", no_wrap=True)
    for header in ("available", "tags", "description"):
        table.add_column(header)
    for e in sorted(entries, key=lambda e: e.public_name):
        if server is None or e.server == server:
            desc = " ".join(e.description.split())
            table.add_row(e.public_name, "yes" if e.available else "no", ",".join(e.tags), desc[:100])
    out.print(table)


@tools_app.command("search")
@handle_errors
def tools_search(
    query: Annotated[str, typer.Argument(help="What you want to do, in plain words.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100, help="How many tools.")] = 10,
    server: Annotated[str | None, typer.Option("--server", help="Only this upstream's tools.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, bm25 or embedding.")] = "hybrid",
    manifest: ManifestOpt = None,
) -> None:
    """Rank tools for a natural-language query (the same search as the find_tools meta-tool)."""
    from vsm_mcp.cli.common import router_settings as _router_settings
    from vsm_mcp.cli.common import run_async

    if mode not in ("hybrid", "bm25", "embedding"):
        raise InvalidArguments(f"--mode must be hybrid, bm25 or embedding (got {mode!r})")
    settings = _router_settings(manifest)
    _, found = run_async(_with_registry(settings, query, limit=limit, server=server, mode=mode))
    assert found is not None
    if found.no_match:
        out.print("no match: no tool fits this task; the nearest tools are:")
    if found.rerank is not None:  # VSM_TOOL_SEARCH_RERANK_MODEL is set: say what the model stage did
        cache = f", LLM cache {found.rerank.cache}" if found.rerank.cache else ""
        out.print(f"rerank: {found.rerank.status}{cache}" + (" (order by the model)" if found.reranked else ""))
    out.print(_hits_table(found.hits))


@bench_app.command("retrieval")
@handle_errors
def bench_retrieval(
    tools: Annotated[Path, typer.Option("--tools", help="tools.jsonl of a tool-retrieval set.")],
    queries: Annotated[Path, typer.Option("--queries", help="queries.jsonl of the same set.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object as the last line.")] = False,
    fusion: Annotated[str | None, typer.Option("--fusion", help="weighted or rrf (default VSM_SEARCH_FUSION).")] = None,
    out_of_scope: Annotated[
        Path | None, typer.Option("--out-of-scope", help="JSONL of queries no tool answers (relevant: []).")
    ] = None,
    cv: Annotated[bool, typer.Option("--cv", help="Leave-servers-out cross-validation of the ranker.")] = False,
    folds: Annotated[int, typer.Option("--folds", min=2, max=20, help="Folds for --cv.")] = 5,
    fit: Annotated[Path | None, typer.Option("--fit", help="Fit the ranker on the whole set and write it here.")] = None,
) -> None:
    """Tool-retrieval quality and latency of bm25, embedding and hybrid search, side by side.

    With --cv: the figures that count — every query scored by a ranker fitted without its
    servers, overall, per query class and per fold, next to the first stage alone.
    """
    from router.registry.embedding_store import default_store
    from router.registry.index import ToolRegistry
    from vsm_mcp.cli.bench_retrieval import cross_validated, fit_ranker_file, run
    from vsm_mcp.cli.common import settings_from
    from vsm_mcp.embeddings import make_embedder

    settings = settings_from()
    chosen = fusion or settings.search_fusion
    if chosen not in ("weighted", "rrf"):
        raise InvalidArguments(f"--fusion must be weighted or rrf (got {chosen!r})")
    if (cv or fit) and chosen != "weighted":
        raise InvalidArguments("--cv and --fit evaluate the ranker, which follows weighted fusion")
    embedder = make_embedder(settings.embedder)
    store = default_store(settings.home, embedder.name, embedder.dim)
    with embedding_progress("embedding tools", enabled=err.is_terminal) as update:
        if fit is not None:
            model = fit_ranker_file(
                tools, queries, out_of_scope, lambda: ToolRegistry(embedder, store=store, ranker=None, progress=update), fit
            )
            out.print(f"ranker written to {fit}: threshold {model.threshold:.4f}")
            return
        if cv:
            result = cross_validated(
                tools, queries, out_of_scope, lambda: ToolRegistry(embedder, store=store, ranker=None, progress=update),
                folds=folds,
            )
            _print_cv(result, embedder.name)
            if as_json:
                out.print(json.dumps(result), soft_wrap=True, markup=False, highlight=False)
            return
        result = run(
            tools, queries, lambda: ToolRegistry(embedder, store=store, fusion=chosen, progress=update),  # type: ignore[arg-type]
            out_of_scope=out_of_scope,
        )
    result["fusion"] = chosen
    result["embedder"] = embedder.name
    table = Table("mode", "recall@1", "recall@5", "MRR", "nDCG@10", "p50 ms", "p95 ms")
    for mode in ("bm25", "embedding", "hybrid_fusion_only", "hybrid"):
        if mode not in result:
            continue
        m = result[mode]
        table.add_row(mode, *(f"{m[k]:.4f}" for k in ("recall@1", "recall@5", "mrr", "ndcg@10")), f"{m['p50_ms']:.2f}", f"{m['p95_ms']:.2f}")
    out.print(f"{result['n_tools']} tools, {result['n_queries']} queries, embedder {embedder.name}, fusion {chosen}")
    out.print(table)
    hybrid = result["hybrid"]
    if "in_scope_no_match" in hybrid:
        line = f"no_match: in-scope {hybrid['in_scope_no_match']:.3f}"
        if "out_of_scope_no_match" in hybrid:
            line += f", out-of-scope {hybrid['out_of_scope_no_match']:.3f}"
        out.print(line + " (fitted on this set: see --cv for held-out figures)")
    if as_json:
        out.print(json.dumps(result), soft_wrap=True, markup=False, highlight=False)


def _print_cv(result: dict[str, Any], embedder: str) -> None:
    """The cross-validated figures as tables: overall and per class, then per fold."""
    out.print(
        f"{result['n_tools']} tools, {result['n_queries']} queries + {result['n_out_of_scope']} out of scope, "
        f"embedder {embedder}, leave-servers-out CV over {len(result['folds'])} folds (held-out figures)"
    )
    table = Table("stage", "slice", "n", "recall@1", "recall@5", "MRR")
    for stage, label in (("first_stage", "fusion only"), ("ranker", "ranker")):
        block = result[stage]
        rows = [("all", block["overall"]), *block["per_class"].items(), *(
            (f"fold {i}", f) for i, f in enumerate(block["per_fold"]))]
        for name, m in rows:
            if m.get("n"):
                table.add_row(label, name, str(m["n"]), f"{m['recall@1']:.4f}", f"{m['recall@5']:.4f}", f"{m['mrr']:.4f}")
    out.print(table)
    nm = result["no_match"]
    if nm["out_of_scope"]:
        out.print(
            f"no_match: out-of-scope {nm['out_of_scope_no_match']:.3f} of {nm['out_of_scope']}, "
            f"in-scope {nm['in_scope_no_match']:.3f} (their recall@5 stays {nm['in_scope_top5_kept']:.4f}: the nearest tools are listed)"
        )
        alt = nm["fitted_margin"]
        out.print(f"  (a margin fitted per fold instead: out-of-scope {alt['out_of_scope_no_match']:.3f}, in-scope {alt['in_scope_no_match']:.3f})")
    cal = result["calibration"]
    out.print(f"calibration of the best tool's probability: ECE {cal['ece']:.3f}, mean p {cal['mean_p']:.3f}, top-1 right {cal['top1_right']:.3f}")
