"""The deployment files, checked without a container engine (none runs on this machine):
compose files against the Compose Specification's JSON schema (the copy vendored by the
check-jsonschema package), then what the schema cannot know — images, health checks,
environment, start order — and the Dockerfile's shape."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import check_jsonschema
import jsonschema
import pytest
import yaml

from vsm_mcp.config import Settings

ROOT = Path(__file__).resolve().parents[3]
FILES = ("compose.yaml", "compose.dev.yaml", "compose.prod.yaml")
LONG_RUNNING = ("postgres", "rabbitmq", "redis", "router", "worker", "lb")


def _schema_validator() -> Any:
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(path.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("name", FILES)
def test_each_compose_file_follows_the_compose_specification(name: str) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in _schema_validator().iter_errors(_load(name))]
    assert errors == []


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    doc = _load("compose.yaml")
    doc["services"]["router"]["imagee"] = doc["services"]["router"].pop("image")
    assert list(_schema_validator().iter_errors(doc))


def _merged() -> dict[str, Any]:
    """compose.yaml with compose.prod.yaml on top (mappings merge, as `docker compose -f … -f …`)."""

    def merge(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: merge(a[k], b[k]) if k in a and k in b else b.get(k, a.get(k)) for k in {**a, **b}}
        return b

    return merge(_load("compose.yaml"), _load("compose.prod.yaml"))  # type: ignore[no-any-return]


def test_every_service_has_an_image_and_every_long_running_one_a_healthcheck() -> None:
    services = _merged()["services"]
    assert set(LONG_RUNNING) | {"migrate"} <= set(services)
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), f"{name} has neither image nor build"
    for name in LONG_RUNNING:
        test = services[name].get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"


def test_start_order_databases_then_migrations_then_routers_then_the_balancer() -> None:
    services = _merged()["services"]

    def needs(name: str) -> dict[str, str]:
        dep = services[name].get("depends_on", {})
        return dep if isinstance(dep, dict) else {d: "service_started" for d in dep}

    assert needs("migrate") == {"postgres": {"condition": "service_healthy"}}
    for app in ("router", "worker"):
        dep = needs(app)
        assert dep["migrate"] == {"condition": "service_completed_successfully"}
        for infra in ("postgres", "rabbitmq", "redis"):
            assert dep[infra] == {"condition": "service_healthy"}
    assert needs("lb")["router"] == {"condition": "service_healthy"}
    # And the graph has an order at all (no cycle).
    order: list[str] = []
    pending = dict.fromkeys(services)
    while pending:
        ready = [s for s in pending if all(d in order for d in needs(s))]
        assert ready, f"depends_on cycle among {sorted(pending)}"
        order += sorted(ready)
        for s in ready:
            del pending[s]


def test_routers_and_workers_get_every_service_url_as_settings_that_exist() -> None:
    services = _merged()["services"]
    known = {f"VSM_{name.upper()}" for name in Settings.model_fields}
    for app in ("router", "worker", "migrate"):
        env = services[app]["environment"]
        unknown = sorted(k for k in env if k.startswith("VSM_") and k not in known)
        assert unknown == [], f"{app}: not a setting: {unknown}"
    for app in ("router", "worker"):
        env = services[app]["environment"]
        assert env["VSM_DATABASE_URL"].startswith("postgresql+asyncpg://vsm_app:")  # never the owner
        assert env["VSM_BUS_URL"].startswith("amqp://")
        assert env["VSM_REDIS_URL"].startswith("redis://")
        assert env["VSM_HOST"] == "0.0.0.0"
    assert services["migrate"]["environment"]["VSM_MIGRATION_DATABASE_URL"].startswith("postgresql+asyncpg://postgres:")


def test_every_compose_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), flags=re.M))
    used: set[str] = set()
    for name in FILES:
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / name).read_text()))
    assert used - documented == set()


def test_the_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and not users[-1].startswith(("root", "0"))
    assert re.search(r"^HEALTHCHECK ", text, flags=re.M)
    for copied in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+) ", text, flags=re.M):
        assert (ROOT / copied).exists(), f"Dockerfile copies {copied}, which is not in the repository"


def test_the_entrypoint_passes_every_cli_command_to_vsm_mcp() -> None:
    from typer.main import get_command

    from vsm_mcp.cli import app

    entry = ROOT / "deploy" / "entrypoint.sh"
    assert os.access(entry, os.X_OK)
    listed = set(re.search(r"^\s*(serve\|[^)]*)\)", entry.read_text(), flags=re.M).group(1).split("|"))  # type: ignore[union-attr]
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert commands - listed == set()


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy (Debian package) not installed")
def test_the_balancer_configuration_parses() -> None:
    cfg = (ROOT / "deploy" / "haproxy.cfg").read_text()
    # Docker's DNS is not here: check the file with the replicas' resolver swapped for a local one.
    local = cfg.replace("nameserver dns 127.0.0.11:53", "nameserver dns 127.0.0.1:53")
    path = ROOT / ".pytest-haproxy.cfg"
    try:
        path.write_text(local)
        proc = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    finally:
        path.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
