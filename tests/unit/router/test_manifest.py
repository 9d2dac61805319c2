"""Manifests: valid entries load; a bad one names the file, the entry and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.upstreams.manifest import DEFAULT_MANIFEST, load_manifests, parse_manifest
from vsm_mcp.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_default_manifest_loads() -> None:
    specs = load_manifests([DEFAULT_MANIFEST])
    assert all(s.kind in ("builtin", "stdio", "http") for s in specs)


def test_all_kinds_and_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "s3cret")
    p = write(
        tmp_path,
        """
upstreams:
  - {name: b, kind: builtin, target: "pkg.mod:build", tags: [storage], tool_tags: {put: ["storage:write"]}}
  - {name: s, kind: stdio, command: npx, args: ["-y", "x"], env: {K: "${TOKEN}"}, pool_size: 3, timeout: 5}
  - {name: h, kind: http, url: "http://127.0.0.1:9/mcp", auth: {bearer: "${TOKEN}"}, cacheable: {get: true}}
""",
    )
    b, s, h = load_manifests([p])
    assert b.tags_for("put") == ("storage", "storage:write") and b.tags_for("get") == ("storage",)
    assert s.pool_size == 3 and s.process_env() == {"K": "s3cret"}
    assert h.http_headers() == {"Authorization": "Bearer s3cret"} and h.cacheable == {"get": True}


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("{name: x, kind: stdio}", "command"),
        ("{name: x, kind: http, url: ftp://a}", "url"),
        ("{name: x, kind: builtin, target: nocolon}", "target"),
        ("{name: 'bad name', kind: stdio, command: a}", "name"),
        ("{name: a__b, kind: stdio, command: a}", "name"),
        ("{name: x, kind: carrier-pigeon}", "kind"),
        ("{name: x, kind: stdio, command: a, timeout: -1}", "timeout"),
        ("{name: x, kind: stdio, command: a, colour: red}", "colour"),
    ],
)
def test_bad_entry_names_file_entry_and_field(tmp_path: Path, entry: str, field: str) -> None:
    p = write(tmp_path, f"upstreams:\n  - {{name: ok, kind: stdio, command: a}}\n  - {entry}\n")
    with pytest.raises(ConfigError) as exc:
        load_manifests([p])
    msg = str(exc.value)
    assert str(p) in msg and "entry #2" in msg and field in msg


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, "upstreams: [{name: a, kind: stdio, command: x}]", "1.yaml")
    write(tmp_path, "upstreams: [{name: a, kind: stdio, command: y}]", "2.yaml")
    with pytest.raises(ConfigError, match="duplicate upstream name"):
        load_manifests([tmp_path])


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_manifests([write(tmp_path, "upstreams: [")])
    with pytest.raises(ConfigError, match="no such file"):
        load_manifests([tmp_path / "nope.yaml"])
    with pytest.raises(ConfigError, match="unknown top-level key"):
        parse_manifest({"servers": []}, "x.yaml")
