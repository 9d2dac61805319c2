"""``vsm-mcp policy compile | test | explain`` — the policy toolchain on the command line.

Registered on the main CLI by vsm_mcp/cli.py; heavy imports (wasmtime) happen inside the
commands so ``vsm-mcp --help`` stays fast.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from vsm_mcp.errors import InvalidArguments, VsmError

policy_app = typer.Typer(
    help="Compile, test and explain policies (docs/policies.md).", no_args_is_help=True
)

FileArg = Annotated[Path, typer.Argument(help="A policy source file.", exists=False)]
InputOpt = Annotated[
    str,
    typer.Option(
        "--input",
        help='Decision input as JSON or @file.json: {"principal": {...}, "tool": {...}, "input": {...}, '
        '"context": {"time": "2026-11-26T20:00:00Z"}}',
    ),
]
SchemaOpt = Annotated[
    Path | None, typer.Option("--schema", help="JSON Schema of the tool arguments that input.* may read.")
]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _read_json(text: str, what: str) -> Any:
    raw = text
    if text.startswith("@"):
        try:
            raw = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArguments(f"cannot read {what} file {text[1:]}: {exc.strerror}") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArguments(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _compile(file: Path, schema: Path | None) -> Any:
    from vsm_mcp.policy.build import compile_policy

    try:
        source = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArguments(f"cannot read {file}: {exc.strerror}") from None
    input_schema = _read_json(f"@{schema}", "schema") if schema else None
    return compile_policy(source, file=str(file), default_name=file.stem, input_schema=input_schema)


def _facts(input_json: str) -> dict[str, Any]:
    from vsm_mcp.policy.facts import normalize

    doc = _read_json(input_json, "--input")
    if not isinstance(doc, dict):
        raise InvalidArguments("--input must be a JSON object")
    ctx = doc.get("context") if isinstance(doc.get("context"), dict) else {}
    doc["context"] = {"time": time.time(), **(ctx or {})}
    return normalize(doc)


@policy_app.command("compile")
def compile_cmd(
    file: FileArg,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the module here (default FILE.wasm).")] = None,
    wat: Annotated[bool, typer.Option("--wat", help="Print the generated WebAssembly text instead.")] = False,
    schema: SchemaOpt = None,
) -> None:
    """Compile FILE to a WebAssembly module following the policy ABI."""
    try:
        compiled = _compile(file, schema)
        if wat:
            typer.echo(compiled.wat)
            return
        target = out or file.with_suffix(".wasm")
        target.write_bytes(compiled.wasm)
        typer.echo(f"{target}: {len(compiled.wasm)} bytes, {len(compiled.doc.rules)} rules, sha256 {compiled.sha256}")
    except VsmError as exc:
        _fail(exc.message)


@policy_app.command("test")
def test_cmd(file: FileArg, input_json: InputOpt, schema: SchemaOpt = None) -> None:
    """Evaluate FILE (compiled, sandboxed) against one input; print the decision as JSON."""
    from vsm_mcp.policy.runtime import PolicyRuntime

    try:
        compiled = _compile(file, schema)
        facts = _facts(input_json)
        decision = PolicyRuntime().load(compiled.wasm).evaluate(facts)
        typer.echo(json.dumps(decision.to_dict(), indent=2))
    except VsmError as exc:
        _fail(exc.message)


@policy_app.command("explain")
def explain_cmd(file: FileArg, input_json: InputOpt, schema: SchemaOpt = None) -> None:
    """Show, rule by rule, which conditions held for one input and why the decision is what it is."""
    try:
        compiled = _compile(file, schema)
        decision, trace = compiled.interpreter().explain(_facts(input_json))
    except VsmError as exc:
        _fail(exc.message)
        return
    for t in trace:
        mark = "fired " if t.matched else "-     "
        typer.echo(f"{mark} {t.effect:5} {t.rule} (line {t.line}): {t.reason}")
    verdict = "default" if decision.rule == "default" else f"rule {decision.rule}"
    typer.echo(f"decision: {decision.effect.upper()} by {verdict}: {decision.reason}")
