"""Run-time managed upstreams and per-tool overrides: what a stored definition may contain.

A *definition* is a manifest entry (router/upstreams/manifest.py ``UpstreamSpec``) kept in the
database instead of a file, owned by a tenant or by the operator (``owner == ""``, global).
An *override* changes how one upstream tool is presented: a new public name, a new description,
hidden, cacheable, extra capability tags, pinned argument values.

Secrets: a stored definition never holds a credential in clear. ``auth`` values and the values of
headers / environment variables whose name looks like a credential (token, key, secret,
password, auth, cookie, credential) must be ``${VAR}`` references to the router's environment or
``${secret:NAME}`` references to a stored secret (write-only: kept in the registry table, never
listed, returned, logged or audited; resolved only when the upstream is started). URLs may not
carry a password or a stored secret (URLs appear in error messages); command arguments may not
carry a stored secret (argv is readable by every local user) nor ``token=…``-style literals.

Tenants may register ``http`` upstreams only: a ``stdio`` or ``builtin`` upstream runs code on
the router's host, which only the operator (global registry, manifests) may decide.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from router.upstreams.manifest import NAME_RE, UpstreamSpec, describe_error
from vsm_mcp.errors import InvalidArguments

GLOBAL = ""  # the owner of the operator's (global) registry
META_TOOL_NAMES = frozenset({"find_tools", "call_tool"})
PUBLIC_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SENSITIVE = re.compile(r"(?i)(auth|token|secret|passw|pwd|api[-_]?key|cookie|credential|private)")
_REF = r"\$\{(?:secret:)?[A-Za-z_][A-Za-z0-9_]*\}"
_ONLY_REFS = re.compile(rf"^(?:[A-Za-z]{{1,16}} )?(?:{_REF})+$")  # "Bearer ${X}", "${A}${B}"
_SECRET_REF = re.compile(r"\$\{secret:([A-Za-z_][A-Za-z0-9_]*)\}")
_ARG_LITERAL = re.compile(r"(?i)(token|secret|passw|api[-_]?key)[A-Za-z_-]*=(?!\$\{)\S")
_MAX_PIN_BYTES = 16 * 1024

# What `add` accepts: the manifest entry's fields (``source`` is the manifest file's, not ours).
DEFINITION_FIELDS = frozenset(UpstreamSpec.model_fields) - {"source"}


def _check_ref_only(where: str, value: str) -> None:
    if not _ONLY_REFS.match(value):
        raise InvalidArguments(
            f"{where}: a credential must be a ${{VAR}} or ${{secret:NAME}} reference, not a literal value",
            data={"field": where},
        )


def check_secrets(spec: UpstreamSpec) -> None:
    """Refuse a definition that carries a credential in clear (see the module docstring)."""
    for key, value in spec.auth.items():
        if key in ("bearer", "value"):
            _check_ref_only(f"auth.{key}", value)
    for key, value in spec.headers.items():
        if _SENSITIVE.search(key):
            _check_ref_only(f"headers.{key}", value)
    for key, value in spec.env.items():
        if _SENSITIVE.search(key):
            _check_ref_only(f"env.{key}", value)
    if "${secret:" in spec.url:  # URLs end up in error messages and logs
        raise InvalidArguments("url: a stored secret cannot go in the URL; use headers or auth", data={"field": "url"})
    if any("${secret:" in a for a in spec.args):  # argv is readable by every local user (/proc)
        raise InvalidArguments("args: a stored secret cannot go in the arguments; pass it in env", data={"field": "args"})
    if spec.url and urlsplit(spec.url).password:
        raise InvalidArguments("url: a password in the URL is not allowed; use auth: {bearer: ${VAR}}", data={"field": "url"})
    for i, arg in enumerate(spec.args):
        if _ARG_LITERAL.search(arg):
            raise InvalidArguments(
                f"args[{i}]: looks like a credential in clear; pass it as an env ${{VAR}} reference", data={"field": "args"}
            )


def secret_refs(spec: UpstreamSpec) -> set[str]:
    """Names of the stored secrets ``spec`` refers to."""
    values = [*spec.env.values(), *spec.headers.values(), *spec.auth.values(), spec.url, *spec.args]
    return {m.group(1) for v in values for m in _SECRET_REF.finditer(v)}


def resolve_secrets(spec: UpstreamSpec, secrets: dict[str, str]) -> UpstreamSpec:
    """``spec`` with ``${secret:NAME}`` replaced by the stored values (in memory only, at mount)."""
    if not secret_refs(spec):
        return spec

    def sub(v: str) -> str:
        return _SECRET_REF.sub(lambda m: secrets.get(m.group(1), ""), v)

    return spec.model_copy(
        update={
            "env": {k: sub(v) for k, v in spec.env.items()},
            "headers": {k: sub(v) for k, v in spec.headers.items()},
            "auth": {k: sub(v) for k, v in spec.auth.items()},
            "url": sub(spec.url),
            "args": [sub(a) for a in spec.args],
        }
    )


def parse_definition(data: Any, *, owner: str = GLOBAL, where: str = "upstream") -> UpstreamSpec:
    """Validate one definition (a manifest entry as a mapping); ``InvalidArguments`` names the field."""
    if not isinstance(data, dict):
        raise InvalidArguments(f"{where}: expected a mapping of manifest fields")
    unknown = sorted(set(data) - DEFINITION_FIELDS)
    if unknown:
        raise InvalidArguments(f"{where}: unknown field {unknown[0]!r}", data={"field": unknown[0]})
    if "kind" not in data:
        raise InvalidArguments(f"{where}: kind: missing (stdio or http)", data={"field": "kind"})
    if data.get("kind") not in ("builtin", "stdio", "http"):
        raise InvalidArguments(f"{where}: kind: unknown kind {data.get('kind')!r} (stdio or http)", data={"field": "kind"})
    try:
        spec = UpstreamSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidArguments(f"{where}: {describe_error(exc)}") from None
    if owner != GLOBAL and spec.kind != "http":
        raise InvalidArguments(
            f"{where}: kind: a tenant may register http upstreams only ({spec.kind} runs code on the router's host)",
            data={"field": "kind"},
        )
    check_secrets(spec)
    return spec


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArguments(f"{what}: must be 1-48 characters of letters, digits, '_' or '-' (got {name!r})")
    if "__" in name:
        raise InvalidArguments(f"{what}: must not contain '__' (it separates server and tool in public names)")
    return name


class ToolOverride(BaseModel):
    """How one upstream tool is presented; every field optional. Applied by the catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="The tool's public name instead of <server>__<tool>.")
    description: str | None = Field(None, description="What agents and tool search see instead of the upstream's text.")
    hidden: bool = Field(False, description="Neither listed, searched nor callable.")
    cacheable: bool | None = Field(None, description="Override the readOnly+idempotent default of the tool cache.")
    tags: tuple[str, ...] = Field((), description="Capability tags added to the tool's.")
    pin: dict[str, Any] = Field(default_factory=dict, description="Argument values fixed by the operator.")

    @field_validator("name")
    @classmethod
    def _check_public(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not PUBLIC_NAME_RE.match(v):
            raise ValueError("must be 1-64 characters of letters, digits, '_' or '-'")
        if v in META_TOOL_NAMES:
            raise ValueError(f"{v!r} is a meta-tool of the router")
        return v

    @field_validator("description")
    @classmethod
    def _check_description(cls, v: str | None) -> str | None:
        if v is not None and len(v) > 8192:
            raise ValueError("at most 8192 characters")
        return v

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for tag in v:
            if not TAG_RE.match(tag):
                raise ValueError(f"tag {tag!r}: letters, digits and _ . : - only")
        return tuple(dict.fromkeys(v))

    @field_validator("pin")
    @classmethod
    def _check_pin(cls, v: dict[str, Any]) -> dict[str, Any]:
        import json

        try:
            size = len(json.dumps(v, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"values must be plain JSON: {exc}") from None
        if size > _MAX_PIN_BYTES:
            raise ValueError(f"at most {_MAX_PIN_BYTES} bytes of JSON")
        return v

    def merged(self, other: ToolOverride) -> ToolOverride:
        """``self`` (global) refined by ``other`` (a tenant's): the tenant's fields win, tags and pins add up."""
        return ToolOverride(
            name=other.name if other.name is not None else self.name,
            description=other.description if other.description is not None else self.description,
            hidden=self.hidden or other.hidden,
            cacheable=other.cacheable if other.cacheable is not None else self.cacheable,
            tags=(*self.tags, *other.tags),
            pin={**self.pin, **other.pin},
        )


def parse_override(data: Any, where: str = "override") -> ToolOverride:
    if not isinstance(data, dict):
        raise InvalidArguments(f"{where}: expected a mapping")
    try:
        return ToolOverride.model_validate(data)
    except ValidationError as exc:
        raise InvalidArguments(f"{where}: {describe_error(exc)}") from None


def override_key(server: str, tool: str) -> str:
    """The registry key of an override: ``server/tool`` (server names have no '/')."""
    check_name(server, "server")
    if not tool or len(tool) > 128:
        raise InvalidArguments("tool: must be 1-128 characters")
    return f"{server}/{tool}"


def split_override_key(key: str) -> tuple[str, str]:
    server, _, tool = key.partition("/")
    return server, tool
