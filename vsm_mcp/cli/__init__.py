"""`vsm-mcp` — the command line, and the composition root.

This package is the one part of the kernel allowed to import ``router`` and ``servers``: it
wires the pieces together. Each command group is a module (``admin``, ``run``, ``tools`` …)
built on ``common``; this file only assembles them. Every command turns a ``VsmError`` into
one red line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from vsm_mcp.cli import admin, audit, ingest, lifecycle, run, states, status, worker
from vsm_mcp.cli.common import DEBUG, console_logging, err
from vsm_mcp.cli.connect import connect_app
from vsm_mcp.cli.notify import notify_app
from vsm_mcp.cli.tools import bench_app, tools_app
from vsm_mcp.cli.upstreams import upstreams_app
from vsm_mcp.config import Settings
from vsm_mcp.env_check import unknown_variables
from vsm_mcp.errors import ConfigError
from vsm_mcp.policy.cli import policy_app

app = typer.Typer(
    name="vsm-mcp",
    help="vsm-mcp: one MCP endpoint in front of many MCP servers, with tool search, policy, "
    "rate limits, caching and audit. Start with `vsm-mcp serve`; settings come from VSM_* "
    "environment variables or .env (see .env.example).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
) -> None:
    DEBUG.on = debug
    console_logging()  # WARNING and up; `serve` raises it to VSM_LOG_LEVEL once migrations are done


app.command()(admin.migrate)
app.add_typer(admin.tenants_app, name="tenants")
app.add_typer(admin.keys_app, name="keys")
admin.tenants_app.command("list")(lifecycle.tenants_list)
for verb in ("disable", "enable", "delete"):
    admin.tenants_app.command(verb)(getattr(lifecycle, f"tenants_{verb}"))
for verb in ("list", "revoke", "rotate"):
    admin.keys_app.command(verb)(getattr(lifecycle, f"keys_{verb}"))
for command in (run.serve, run.stdio, run.call, run.server, worker.worker):
    app.command()(command)
app.command()(ingest.ingest)
app.command()(status.status)
app.add_typer(policy_app, name="policy")
app.add_typer(tools_app, name="tools")
app.add_typer(bench_app, name="bench")
app.add_typer(connect_app, name="connect")
app.add_typer(notify_app, name="notify")
app.command()(states.states)
app.command()(audit.audit)
app.add_typer(upstreams_app, name="upstreams")


def main() -> None:
    """Console-script entry point."""
    for line in unknown_variables(Settings.model_fields):  # a misspelt VSM_PROT used to be ignored silently
        err.print(line, markup=False, soft_wrap=True, highlight=False)
    try:
        app()
    except ConfigError as exc:  # raised while building settings inside a command
        err.print(f"[bold red]error:[/] {exc.message}")
        sys.exit(2)


if __name__ == "__main__":
    main()
