"""Manifest problems a user meets first: bad YAML names file, line and column (it gave neither);
the new per-upstream flags (required, session_mode) are validated like every field."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.upstreams.manifest import load_manifests, parse_manifest
from vsm_mcp.errors import ConfigError


def test_bad_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams:\n  - name: a\n    kind: builtin\n    target: [unclosed\n  - name: b\n")
    with pytest.raises(ConfigError) as info:
        load_manifests([bad])
    msg = info.value.message
    assert "\n" not in msg
    assert msg.startswith(f"manifest {bad}:5:") and "invalid YAML" in msg, msg


def test_tab_indentation_points_at_the_tab(tmp_path: Path) -> None:
    bad = tmp_path / "tabs.yaml"
    bad.write_text("upstreams:\n\t- name: a\n")
    with pytest.raises(ConfigError, match=r"tabs\.yaml:2:1: invalid YAML"):
        load_manifests([bad])


def test_required_and_session_mode() -> None:
    entry = {"name": "m", "kind": "stdio", "command": "x"}
    spec = parse_manifest({"upstreams": [entry]}, "t.yaml")[0]
    assert spec.required is False and spec.session_mode == "shared"
    spec = parse_manifest({"upstreams": [{**entry, "required": True, "session_mode": "per_client"}]}, "t.yaml")[0]
    assert spec.required is True and spec.session_mode == "per_client"
    with pytest.raises(ConfigError, match="session_mode"):
        parse_manifest({"upstreams": [{**entry, "session_mode": "sometimes"}]}, "t.yaml")


def test_vsm_home_in_env_values_is_the_routers_home(tmp_path: Path) -> None:
    """The stdio memory example stores its file under ${VSM_HOME}, a folder that exists."""
    example = Path(__file__).resolve().parents[3] / "manifests" / "examples" / "stdio-memory.yaml"
    spec = next(s for s in load_manifests([example], home=tmp_path / "h") if s.name == "memory")
    assert spec.process_env()["MEMORY_FILE_PATH"] == str((tmp_path / "h").resolve() / "memory.json")
