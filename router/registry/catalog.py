"""The catalog: every upstream's tools, prompts and resources, under their public names.

Upstream supervisors call ``set_server(...)`` when a server's lists are (re)loaded (start-up,
``list_changed``, reconnect) and ``set_available(...)`` when it goes down or comes back.
Listeners registered with ``add_listener`` get ``on_change(server, tools)`` (a list of
``ToolEntry``) after each such change — the registry (router/registry/index.py) indexes from it.

Reads are cheap: ``resolve(public_name)`` is one dict lookup, and ``version`` changes on every
write so callers (the aggregate's serialized ``tools/list``) can cache by it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import mcp.types as mt

from router.registry import names
from vsm_mcp.errors import NotFound

log = logging.getLogger(__name__)


def schema_hash(schema: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a schema (validators and cache keys use it)."""
    return hashlib.sha256(json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """One upstream tool as the router knows it."""

    server: str
    name: str
    public_name: str
    title: str | None
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any]
    tags: tuple[str, ...]
    schema_hash: str
    cacheable: bool
    available: bool
    tool: mt.Tool = field(repr=False, compare=False)

    def public_tool(self) -> mt.Tool:
        """The tool as the aggregate lists it (public name, same schema)."""
        return self.tool.model_copy(update={"name": self.public_name})


@dataclass(frozen=True, slots=True)
class PromptEntry:
    server: str
    name: str
    public_name: str
    prompt: mt.Prompt = field(repr=False, compare=False)


class CatalogListener(Protocol):
    def on_change(self, server: str, tools: list[ToolEntry]) -> None:
        """Called synchronously after ``server``'s tools or availability changed; must not block."""


@dataclass
class _Server:
    tools: list[mt.Tool] = field(default_factory=list)
    prompts: list[mt.Prompt] = field(default_factory=list)
    resources: list[mt.Resource] = field(default_factory=list)
    templates: list[mt.ResourceTemplate] = field(default_factory=list)
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cacheable: dict[str, bool] = field(default_factory=dict)
    available: bool = False


def _is_cacheable(tool: mt.Tool, override: bool | None) -> bool:
    if override is not None:
        return override
    ann = tool.annotations
    return bool(ann and ann.read_only_hint and ann.idempotent_hint)


class Catalog:
    """Tools, prompts and resources of all upstreams; see the module docstring."""

    def __init__(self) -> None:
        self._servers: dict[str, _Server] = {}
        self._tools: dict[str, ToolEntry] = {}
        self._by_server: dict[str, list[ToolEntry]] = {}
        self._prompts: dict[str, PromptEntry] = {}
        self._listeners: list[CatalogListener] = []
        self.version = 0

    # --- writes ------------------------------------------------------------------------
    def add_listener(self, listener: CatalogListener) -> None:
        self._listeners.append(listener)

    def set_server(
        self,
        server: str,
        *,
        tools: Sequence[mt.Tool],
        prompts: Sequence[mt.Prompt] = (),
        resources: Sequence[mt.Resource] = (),
        templates: Sequence[mt.ResourceTemplate] = (),
        tags: dict[str, tuple[str, ...]] | None = None,
        cacheable: dict[str, bool] | None = None,
        available: bool = True,
    ) -> None:
        """Replace ``server``'s lists (``tags``: tool -> capability tags)."""
        seen: set[str] = set()
        unique = [t for t in tools if not (t.name in seen or seen.add(t.name))]  # type: ignore[func-returns-value]
        self._servers[server] = _Server(
            tools=unique,
            prompts=list(prompts),
            resources=list(resources),
            templates=list(templates),
            tags=dict(tags or {}),
            cacheable=dict(cacheable or {}),
            available=available,
        )
        self._rebuild(changed={server})

    def set_available(self, server: str, available: bool) -> None:
        state = self._servers.setdefault(server, _Server())
        if state.available == available:
            return
        state.available = available
        self._rebuild(changed={server})

    def remove_server(self, server: str) -> None:
        if self._servers.pop(server, None) is not None:
            self._rebuild(changed={server})

    def _rebuild(self, changed: set[str]) -> None:
        old = {name: e.server for name, e in self._tools.items()}
        pairs = [(s, t.name) for s, st in self._servers.items() for t in st.tools]
        mapping = names.assign(pairs)
        tools: dict[str, ToolEntry] = {}
        by_server: dict[str, list[ToolEntry]] = {}
        for s, st in sorted(self._servers.items()):
            for t in st.tools:
                entry = ToolEntry(
                    server=s,
                    name=t.name,
                    public_name=mapping[(s, t.name)],
                    title=t.title or (t.annotations.title if t.annotations else None),
                    description=t.description or "",
                    input_schema=dict(t.input_schema),
                    annotations=t.annotations.model_dump(exclude_none=True, by_alias=True) if t.annotations else {},
                    tags=st.tags.get(t.name, ()),
                    schema_hash=schema_hash(dict(t.input_schema)),
                    cacheable=_is_cacheable(t, st.cacheable.get(t.name)),
                    available=st.available,
                    tool=t,
                )
                tools[entry.public_name] = entry
                by_server.setdefault(s, []).append(entry)
        pmap = names.assign((s, p.name) for s, st in self._servers.items() for p in st.prompts)
        self._prompts = {
            pmap[(s, p.name)]: PromptEntry(s, p.name, pmap[(s, p.name)], p)
            for s, st in sorted(self._servers.items())
            for p in st.prompts
        }
        # Servers whose public names moved because another server's names collided with them.
        for name, entry in tools.items():
            if old.get(name) not in (None, entry.server):
                changed.add(entry.server)
        self._tools, self._by_server = tools, by_server
        self.version += 1
        for s in sorted(changed):
            self._notify(s, by_server.get(s, []))

    def _notify(self, server: str, entries: list[ToolEntry]) -> None:
        for listener in list(self._listeners):
            try:
                listener.on_change(server, entries)
            except Exception:  # a listener's bug must not break the catalog for everyone
                log.exception("catalog listener %r failed for server %s", listener, server)

    # --- reads -------------------------------------------------------------------------
    def resolve(self, public_name: str) -> ToolEntry:
        entry = self._tools.get(public_name)
        if entry is None:
            raise NotFound(f"unknown tool {public_name!r}", data={"tool": public_name})
        return entry

    def get(self, public_name: str) -> ToolEntry | None:
        return self._tools.get(public_name)

    def tools(self) -> list[ToolEntry]:
        return list(self._tools.values())

    def server_tools(self, server: str) -> list[ToolEntry]:
        return list(self._by_server.get(server, []))

    def find(self, server: str, tool: str) -> ToolEntry | None:
        for e in self._by_server.get(server, []):
            if e.name == tool:
                return e
        return None

    def servers(self) -> list[str]:
        return sorted(self._servers)

    def is_available(self, server: str) -> bool:
        st = self._servers.get(server)
        return bool(st and st.available)

    def prompts(self) -> list[PromptEntry]:
        return list(self._prompts.values())

    def resolve_prompt(self, public_name: str) -> PromptEntry:
        entry = self._prompts.get(public_name)
        if entry is None:
            raise NotFound(f"unknown prompt {public_name!r}", data={"prompt": public_name})
        return entry

    def resources(self) -> list[tuple[str, mt.Resource]]:
        """(server, resource) for every resource; a URI listed by two servers goes to the first by name."""
        seen: set[str] = set()
        out: list[tuple[str, mt.Resource]] = []
        for s, st in sorted(self._servers.items()):
            for r in st.resources:
                if str(r.uri) not in seen:
                    seen.add(str(r.uri))
                    out.append((s, r))
        return out

    def templates(self) -> list[tuple[str, mt.ResourceTemplate]]:
        return [(s, t) for s, st in sorted(self._servers.items()) for t in st.templates]

    def resource_server(self, uri: str) -> str:
        """Which server serves ``uri``: an exact listed URI, else the longest template prefix."""
        for s, r in self.resources():
            if str(r.uri) == uri:
                return s
        best, best_len = "", -1
        for s, t in self.templates():
            prefix = t.uri_template.split("{", 1)[0]
            if uri.startswith(prefix) and len(prefix) > best_len:
                best, best_len = s, len(prefix)
        if best:
            return best
        raise NotFound(f"unknown resource {uri!r}", data={"uri": uri})

    def replace_availability(self, entry: ToolEntry) -> ToolEntry:
        """``entry`` with the server's current availability."""
        return replace(entry, available=self.is_available(entry.server))
