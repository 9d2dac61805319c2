"""The catalog: every upstream's tools, prompts and resources, under their public names.

Upstream supervisors call ``set_server(...)`` when a server's lists are (re)loaded (start-up,
``list_changed``, reconnect) and ``set_available(...)`` when it goes down or comes back.
Listeners registered with ``add_listener`` get ``on_change(server, tools)`` (a list of
``ToolEntry``) after each such change — the registry (router/registry/index.py) indexes from it.

Reads are cheap: ``resolve(public_name)`` is one dict lookup, and ``version`` changes on every
write so callers (the aggregate's serialized ``tools/list``) can cache by it.

Per-tool overrides (``set_overrides``, issue 27; router/upstreams/definitions.py ``ToolOverride``)
are applied here, before anything downstream sees a tool: a hidden tool gets no entry at all (not
listed, not indexed, not resolvable), a renamed one is listed, indexed and resolved under its new
name, a re-described one carries the new description in its ``tool`` (what ``tools/list`` and
the search index read), pinned arguments leave the input schema and ride in ``pinned`` for the
dispatcher to set. Overrides are per tenant or global (``None``); a tenant's refine the global one.

Tenants: a server registered with ``set_owner(server, tenant, name)`` (a tenant's run-time
upstream, runtime id ``name@tenant``) is visible only in that tenant's *view*. A tenant with its
own servers or overrides gets a view = the global entries it does not override + its own
entries, named without colliding with the global ones; other tenants read the global view.
``resolve`` / ``tools`` take the caller's tenant. Listeners are told per *index key*: the server
id for global entries, ``server@tenant`` for a tenant's variants, so tool search can index every
view and filter by ``index_keys(tenant)``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import mcp.types as mt

from router.registry import names
from vsm_mcp.errors import NotFound

if TYPE_CHECKING:
    from router.upstreams.definitions import ToolOverride

Overrides = dict[str | None, dict[tuple[str, str], "ToolOverride"]]  # tenant|None -> (server, tool) -> override

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
    index_key: str = ""  # the search index's server key: ``server``, or ``server@tenant`` in a tenant's view
    pinned: dict[str, Any] = field(default_factory=dict, hash=False)  # argument values callers cannot set

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
        self._owners: dict[str, tuple[str, str]] = {}  # server id -> (tenant, name shown) for tenants' servers
        self._overrides: Overrides = {}
        self._views: dict[str, dict[str, ToolEntry]] = {}  # tenant -> its view (only tenants that differ)
        self._index: dict[str, list[ToolEntry]] = {}  # index key -> entries
        self._keys: dict[str | None, frozenset[str]] = {None: frozenset()}
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

    def set_owner(self, server: str, tenant: str | None, name: str = "") -> None:
        """Make ``server`` a tenant's (shown as ``name``), or global again with ``tenant=None``."""
        if tenant is None:
            self._owners.pop(server, None)
        else:
            self._owners[server] = (tenant, name or server)

    def set_overrides(self, overrides: Overrides) -> None:
        """Replace every tool override (keys: tenant or None, then (server name, tool name))."""
        cleaned = {t: dict(o) for t, o in overrides.items() if o}
        if cleaned != self._overrides:
            self._overrides = cleaned
            self._rebuild(changed=set())

    def _shown(self, server: str) -> str:
        owner = self._owners.get(server)
        return owner[1] if owner else server

    def _rebuild(self, changed: set[str]) -> None:
        glob = {s: st for s, st in self._servers.items() if s not in self._owners}
        g_over = self._overrides.get(None, {})
        g_entries = self._entries(glob, g_over, None, set())
        index: dict[str, list[ToolEntry]] = {}
        for e in g_entries:
            index.setdefault(e.index_key, []).append(e)
        keys: dict[str | None, frozenset[str]] = {None: frozenset(index)}
        views: dict[str, dict[str, ToolEntry]] = {}
        tenants = {t for t, _ in self._owners.values()} | {t for t in self._overrides if t is not None}
        for tenant in sorted(tenants):
            t_over = self._overrides.get(tenant, {})
            merged = dict(g_over)
            for k, ov in t_over.items():
                merged[k] = g_over[k].merged(ov) if k in g_over else ov
            shadowed = {s for s in glob if any(k[0] == s for k in t_over)}
            own = {s: st for s, st in self._servers.items() if self._owners.get(s, ("",))[0] == tenant}
            base = [e for e in g_entries if e.server not in shadowed]
            extra = self._entries({**{s: glob[s] for s in shadowed}, **own}, merged, tenant, {e.public_name for e in base})
            view = {e.public_name: e for e in base}
            view.update({e.public_name: e for e in extra})
            views[tenant] = view
            for e in extra:
                index.setdefault(e.index_key, []).append(e)
            keys[tenant] = frozenset(e.index_key for e in view.values())
        gpairs = [(s, p.name) for s, st in glob.items() for p in st.prompts]
        pmap = names.assign(gpairs)
        self._prompts = {pmap[(s, p.name)]: PromptEntry(s, p.name, pmap[(s, p.name)], p) for s, st in sorted(glob.items()) for p in st.prompts}
        by_server: dict[str, list[ToolEntry]] = {}
        for e in g_entries:
            by_server.setdefault(e.server, []).append(e)
        for e in (e for v in views.values() for e in v.values() if e.server in self._owners):
            if e not in by_server.setdefault(e.server, []):
                by_server[e.server].append(e)
        old = self._index
        self._tools, self._by_server, self._views, self._index, self._keys = (
            {e.public_name: e for e in g_entries}, by_server, views, index, keys,
        )
        self.version += 1
        for key in sorted(set(old) | set(index) | changed):
            if old.get(key) != index.get(key) or (key in changed and key in index):
                self._notify(key, index.get(key, []))

    def _entries(
        self, servers: dict[str, _Server], overrides: dict[tuple[str, str], ToolOverride], tenant: str | None, reserved: set[str]
    ) -> list[ToolEntry]:
        """The entries of ``servers`` with ``overrides`` applied, named around ``reserved``."""
        visible: list[tuple[str, _Server, mt.Tool, ToolOverride | None]] = []
        for s, st in sorted(servers.items()):
            for t in st.tools:
                ov = overrides.get((self._shown(s), t.name))
                if ov is None or not ov.hidden:
                    visible.append((s, st, t, ov))
        # Default names first: a rename never takes a name another tool has (or would get), so an
        # override cannot silently move someone else's tool to a hashed name.
        wanted = {(s, t.name): ov.name for s, _st, t, ov in visible if ov is not None and ov.name}
        mapping = names.assign(
            ((s, t.name) for s, _st, t, _ov in visible if (s, t.name) not in wanted), reserved=reserved, shown=self._shown
        )
        taken = set(reserved) | set(mapping.values())
        renamed: dict[tuple[str, str], str] = {}
        for pair, new_name in sorted(wanted.items()):
            if new_name in taken:  # the write path refuses most of these; a later upstream can still meet one
                log.warning("override of %s/%s: the name %r is taken; keeping the default", pair[0], pair[1], new_name)
                continue
            taken.add(new_name)
            renamed[pair] = new_name
        fallback = [pair for pair in wanted if pair not in renamed]
        if fallback:
            mapping.update(names.assign(fallback, reserved=taken, shown=self._shown))
        out: list[ToolEntry] = []
        for s, st, t, ov in visible:
            public = renamed.get((s, t.name)) or mapping[(s, t.name)]
            tool, tags, cacheable, pinned = t, st.tags.get(t.name, ()), _is_cacheable(t, st.cacheable.get(t.name)), {}
            update: dict[str, Any] = {}
            if tool.description and tool.description != (clean := inspect.cleandoc(tool.description)):
                # Python servers hand their docstrings over as written: the indentation of every
                # continuation line is tokens an agent pays for in each listing, and says nothing.
                update["description"] = clean
            if ov is not None:
                pinned = dict(ov.pin)
                if (s, t.name) in renamed:
                    update["name"] = public
                if ov.description is not None:
                    update["description"] = ov.description
                if pinned:
                    update["input_schema"] = _without(dict(t.input_schema), pinned)
                tags = tuple(dict.fromkeys((*tags, *ov.tags)))
                if ov.cacheable is not None:
                    cacheable = ov.cacheable
            tool = t.model_copy(update=update) if update else t
            schema = dict(tool.input_schema)
            key = s if tenant is None or s in self._owners else f"{s}@{tenant}"
            out.append(
                ToolEntry(
                    server=s,
                    name=t.name,
                    public_name=public,
                    title=tool.title or (tool.annotations.title if tool.annotations else None),
                    description=tool.description or "",
                    input_schema=schema,
                    annotations=tool.annotations.model_dump(exclude_none=True, by_alias=True) if tool.annotations else {},
                    tags=tags,
                    schema_hash=schema_hash(schema),
                    cacheable=cacheable,
                    available=st.available,
                    tool=tool,
                    index_key=key,
                    pinned=pinned,
                )
            )
        return out

    def _notify(self, server: str, entries: list[ToolEntry]) -> None:
        for listener in list(self._listeners):
            try:
                listener.on_change(server, entries)
            except Exception:  # a listener's bug must not break the catalog for everyone
                log.exception("catalog listener %r failed for server %s", listener, server)

    # --- reads -------------------------------------------------------------------------
    def resolve(self, public_name: str, tenant: str | None = None) -> ToolEntry:
        view = self._views.get(tenant, self._tools) if self._views and tenant is not None else self._tools
        entry = view.get(public_name)
        if entry is None:
            server = public_name.split(names.SEPARATOR, 1)[0] if names.SEPARATOR in public_name else ""
            if server and not any(self._shown(s) == server for s in self._servers):
                raise NotFound(f"unknown tool {public_name!r}: no upstream {server!r}", data={"tool": public_name})
            raise NotFound(f"unknown tool {public_name!r}", data={"tool": public_name})
        return entry

    def get(self, public_name: str, tenant: str | None = None) -> ToolEntry | None:
        view = self._views.get(tenant, self._tools) if tenant is not None else self._tools
        return view.get(public_name)

    def tools(self, tenant: str | None = None) -> list[ToolEntry]:
        """The tools ``tenant`` sees (the global view for None or a tenant with nothing of its own)."""
        view = self._views.get(tenant, self._tools) if tenant is not None else self._tools
        return list(view.values())

    def view_of(self, tenant: str | None) -> str | None:
        """Which view ``tenant`` reads: itself when it has one of its own, else None (global)."""
        return tenant if tenant is not None and tenant in self._views else None

    def index_keys(self, tenant: str | None) -> frozenset[str]:
        """The search-index keys whose records ``tenant`` may see."""
        return self._keys.get(self.view_of(tenant), self._keys[None])

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
            if s in self._owners:
                continue
            for r in st.resources:
                if str(r.uri) not in seen:
                    seen.add(str(r.uri))
                    out.append((s, r))
        return out

    def templates(self) -> list[tuple[str, mt.ResourceTemplate]]:
        return [(s, t) for s, st in sorted(self._servers.items()) if s not in self._owners for t in st.templates]

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


def _without(schema: dict[str, Any], pinned: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without the pinned properties: callers neither see nor may send them."""
    props = schema.get("properties")
    if isinstance(props, dict):
        schema["properties"] = {k: v for k, v in props.items() if k not in pinned}
    required = schema.get("required")
    if isinstance(required, list):
        schema["required"] = [r for r in required if r not in pinned]
    return schema
