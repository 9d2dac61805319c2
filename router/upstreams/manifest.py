"""Manifests: ``manifests/*.yaml`` → validated upstream specs.

A manifest file is ``{upstreams: [entry, …]}``; each entry is one MCP server the router mounts::

    - name: storage                 # [A-Za-z0-9_-], unique across all manifests
      kind: builtin                 # builtin | stdio | http
      target: "servers.storage.server:build"     # builtin: import path of build(ctx) -> MCPServer
      command: npx                  # stdio
      args: ["-y", "@modelcontextprotocol/server-memory"]
      env: {KEY: value}             # stdio; values may use ${VAR} from the router's environment
      cwd: /some/dir                # stdio
      url: https://host/mcp         # http (streamable HTTP; falls back to SSE)
      headers: {X-Api-Key: "${TOKEN}"}            # http
      auth: {bearer: "${TOKEN}"}    # http; shorthand for an Authorization header
      timeout: 30                   # seconds per call
      pool_size: 1                  # stdio: number of processes sharing the load
      enabled: true
      tags: [storage]               # capability tags of every tool
      tool_tags: {put: [storage:write]}           # per tool, added to ``tags``
      cacheable: {get: true}        # per tool override of the readOnly+idempotent default
      cache_ttl: {get: 300}         # seconds a cached result of that tool is served (default VSM_TOOL_CACHE_TTL_S)
      zombie_s: 10                  # stdio: no ping answer this long = stuck: drained and replaced
      rate_limit: 0                 # calls/s per tool across principals (0 = unlimited)
      required: false               # true: /readyz is 503 while this upstream is down
      session_mode: shared          # stdio: /mcp/<name> clients share the pool (per_client: a process each)

A bad file fails at start with ``ConfigError`` naming the file, the entry and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vsm_mcp.errors import ConfigError

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "default.yaml"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Kind = Literal["builtin", "stdio", "http"]


class UpstreamSpec(BaseModel):
    """One upstream MCP server, as declared in a manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Kind
    target: str = ""
    command: str = ""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    auth: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(30.0, gt=0, le=3600)
    pool_size: int = Field(1, ge=1, le=64)
    enabled: bool = True
    tags: list[str] = Field(default_factory=list)
    tool_tags: dict[str, list[str]] = Field(default_factory=dict)
    cacheable: dict[str, bool] = Field(default_factory=dict)
    idempotent: dict[str, bool] = Field(default_factory=dict)  # tool -> safe to repeat (else its idempotentHint)
    cache_ttl: dict[str, Annotated[float, Field(gt=0, le=30 * 86400)]] = Field(default_factory=dict)
    # stdio: seconds without a ping answer before a child is a zombie (default VSM_UPSTREAM_ZOMBIE_S);
    # raise it for a server whose tools block its loop longer than that (it cannot answer meanwhile)
    zombie_s: float | None = Field(None, gt=0, le=3600)
    rate_limit: float = Field(0.0, ge=0)
    required: bool = False
    session_mode: Literal["shared", "per_client"] = "shared"
    source: str = Field("", exclude=True, description="the manifest file this entry came from")

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be 1-48 characters of letters, digits, '_' or '-'")
        if "__" in v:
            raise ValueError("must not contain '__' (it separates server and tool in public names)")
        return v

    @model_validator(mode="after")
    def _check_kind_fields(self) -> UpstreamSpec:
        if self.kind == "builtin":
            if ":" not in self.target:
                raise ValueError("target: a builtin needs target 'package.module:function'")
        elif self.kind == "stdio":
            if not self.command:
                raise ValueError("command: a stdio upstream needs a command")
        elif self.kind == "http":
            if not self.url.startswith(("http://", "https://")):
                raise ValueError("url: an http upstream needs an http:// or https:// url")
        unknown = set(self.auth) - {"bearer", "header", "value"}
        if unknown:
            raise ValueError(f"auth: unknown key {sorted(unknown)[0]!r}; use bearer, or header + value")
        return self

    def tags_for(self, tool: str) -> tuple[str, ...]:
        """Capability tags of ``tool``: the entry's tags plus its tool_tags, de-duplicated, in order."""
        out = dict.fromkeys([*self.tags, *self.tool_tags.get(tool, [])])
        return tuple(out)

    def http_headers(self) -> dict[str, str]:
        """Headers for an http upstream, with ${VAR} expanded and ``auth`` applied."""
        headers = {k: expand_env(v) for k, v in self.headers.items()}
        if "bearer" in self.auth:
            headers["Authorization"] = f"Bearer {expand_env(self.auth['bearer'])}"
        elif "header" in self.auth:
            headers[self.auth["header"]] = expand_env(self.auth.get("value", ""))
        return headers

    def process_env(self) -> dict[str, str]:
        return {k: expand_env(v) for k, v in self.env.items()}


def expand_env(value: str) -> str:
    """Replace ``${VAR}`` with the environment's value (empty when unset)."""
    return _ENV_RE.sub(lambda m: os.environ.get(m.group(1), ""), value)


def describe_error(exc: ValidationError) -> str:
    """The first validation error as one line: ``field: message``."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    if not loc and ":" in msg.split(" ", 1)[0]:
        loc, _, msg = msg.partition(": ")
    return f"{loc or 'entry'}: {msg}"


def parse_manifest(data: Any, source: str) -> list[UpstreamSpec]:
    """Validate the parsed YAML of one manifest file."""
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("upstreams", []), list):
        raise ConfigError(f"manifest {source}: expected a mapping with a list 'upstreams'")
    extra = set(data) - {"upstreams"}
    if extra:
        raise ConfigError(f"manifest {source}: unknown top-level key {sorted(extra)[0]!r} (only 'upstreams')")
    specs: list[UpstreamSpec] = []
    for i, entry in enumerate(data.get("upstreams") or []):
        label = f"entry #{i + 1}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label += f" ({entry['name']})"
        if not isinstance(entry, dict):
            raise ConfigError(f"manifest {source}, {label}: expected a mapping")
        try:
            specs.append(UpstreamSpec.model_validate({**entry, "source": source}))
        except ValidationError as exc:
            raise ConfigError(f"manifest {source}, {label}: {describe_error(exc)}") from None
    return specs


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """The manifest files named by ``paths`` (a directory means its *.yaml / *.yml)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            out.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"manifest {p}: no such file or directory")
    return out


def _yaml_problem(f: Path, exc: yaml.YAMLError) -> str:
    """``manifest <file>:<line>:<column>: invalid YAML: <problem>`` in one line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    where = f"{f}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(f)
    return f"manifest {where}: invalid YAML: {' '.join(str(what).split())}"


def _with_home(data: Any, home: str) -> Any:
    """``${VSM_HOME}`` in any string of a manifest → the router's home (absolute), which exists
    once the router runs: a stdio server can keep its files there (the memory example does)."""
    if isinstance(data, str):
        return data.replace("${VSM_HOME}", home)
    if isinstance(data, list):
        return [_with_home(v, home) for v in data]
    if isinstance(data, dict):
        return {k: _with_home(v, home) for k, v in data.items()}
    return data


def load_manifests(paths: Sequence[str | Path] | None = None, *, home: str | Path | None = None) -> list[UpstreamSpec]:
    """Load and validate manifest files/directories (default: the packaged default.yaml).

    Names must be unique across all files; disabled entries are kept (``enabled=False``)
    so /readyz can list them. ``home`` (the router's VSM_HOME) is what ``${VSM_HOME}`` means.
    """
    files = manifest_files(paths if paths else [DEFAULT_MANIFEST])
    specs: list[UpstreamSpec] = []
    seen: dict[str, str] = {}
    for f in files:
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(_yaml_problem(f, exc)) from None
        except OSError as exc:
            raise ConfigError(f"manifest {f}: cannot read: {exc.strerror}") from None
        if home is not None:
            data = _with_home(data, str(Path(home).resolve()))
        for spec in parse_manifest(data, str(f)):
            if spec.name in seen:
                raise ConfigError(
                    f"manifest {f}, entry ({spec.name}): name: duplicate upstream name, already defined in {seen[spec.name]}"
                )
            seen[spec.name] = str(f)
            specs.append(spec)
    return specs
