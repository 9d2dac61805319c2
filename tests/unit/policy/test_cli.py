"""`vsm-mcp policy compile | test | explain`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from vsm_mcp.cli import app
from vsm_mcp.policy import PolicyRuntime, normalize

SOURCE = """default allow
deny after_hours "deletes only 09-17 UTC" when tool.name == "storage_delete" and (context.hour < 9 or context.hour >= 17)
allow admin when "admin" in principal.scopes
"""
LATE = '{"tool": {"name": "storage_delete"}, "context": {"time": "2026-11-26T20:00:00Z"}}'


def write(tmp_path: Path, text: str = SOURCE) -> Path:
    path = tmp_path / "hours.policy"
    path.write_text(text)
    return path


def test_compile_writes_a_module_that_follows_the_abi(tmp_path: Path) -> None:
    src = write(tmp_path)
    res = CliRunner().invoke(app, ["policy", "compile", str(src), "-o", str(tmp_path / "out.wasm")])
    assert res.exit_code == 0, res.output
    assert "2 rules" in res.output
    loaded = PolicyRuntime().load((tmp_path / "out.wasm").read_bytes())
    assert loaded.name == "hours"
    assert loaded.evaluate(normalize(json.loads(LATE))).rule == "after_hours"
    wat = CliRunner().invoke(app, ["policy", "compile", str(src), "--wat"])
    assert wat.exit_code == 0 and '(export "vsm_evaluate")' in wat.output


def test_test_prints_the_decision(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["policy", "test", str(write(tmp_path)), "--input", LATE])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rule"] == "after_hours"
    (tmp_path / "in.json").write_text('{"tool": {"name": "storage_get"}}')
    res = CliRunner().invoke(app, ["policy", "test", str(write(tmp_path)), "--input", f"@{tmp_path / 'in.json'}"])
    assert json.loads(res.output)["effect"] == "allow"


def test_explain_shows_each_rule(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["policy", "explain", str(write(tmp_path)), "--input", LATE])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("fired  deny  after_hours (line 2)")
    assert lines[1].startswith("-      allow admin (line 3)")
    assert lines[2] == "decision: DENY by rule after_hours: deletes only 09-17 UTC"


def test_errors_are_one_line_with_position(tmp_path: Path) -> None:
    bad = write(tmp_path, "default allow\ndeny x when tool.name >\n")
    res = CliRunner().invoke(app, ["policy", "compile", str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:3:1: expected a value" in res.output
    res = CliRunner().invoke(app, ["policy", "test", str(write(tmp_path)), "--input", "{nope"])
    assert res.exit_code == 1 and "--input is not valid JSON" in res.output
    res = CliRunner().invoke(app, ["policy", "test", str(tmp_path / "missing.policy"), "--input", "{}"])
    assert res.exit_code == 1 and "cannot read" in res.output
