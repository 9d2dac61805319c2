"""The operations on the upstream registry, shared by the CLI, the admin MCP tools and REST.

``UpstreamAdmin(store, …)`` validates first and writes second, so a bad definition changes
nothing and gets one line naming what is wrong: an unknown kind, a missing field (``command``
for stdio, ``url`` for http), a name that is taken (by a manifest entry, the global registry or
the owner's own registry) or contains ``__``, a credential in clear, a stdio command not on
PATH, an http URL that does not answer. After a write it announces the change on the bus
(``upstreams.changed``) and calls ``on_change`` (the local router applies it at once); a router
that misses the announcement finds the change at its next poll of the table.

``owner`` is the tenant id, or ``GLOBAL`` ("") for the operator's registry. Listing shows
definitions as stored — ``${…}`` references, never a secret's value — and secrets by name only.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx

from router.upstreams.definitions import (
    GLOBAL,
    SECRET_NAME_RE,
    check_name,
    override_key,
    parse_definition,
    parse_override,
    secret_refs,
    split_override_key,
)
from router.upstreams.registry_state import Row
from router.upstreams.store import RegistryStore
from router.upstreams.url_guard import check_upstream_url
from vsm_mcp.bus.events import Event
from vsm_mcp.errors import InvalidArguments, NotFound
from vsm_mcp.ssrf import AddressGuard

log = logging.getLogger(__name__)

TOPIC = "upstreams.changed"
PROBE_TIMEOUT_S = 3.0


async def probe_url(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ``InvalidArguments`` when nothing answers HTTP at ``url`` (any status is an answer)."""
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            await client.request("GET", url, headers={"accept": "application/json, text/event-stream"})
    except httpx.HTTPError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArguments(f"url: cannot reach {url}: {reason}", data={"field": "url"}) from None


def _strip_none(patch: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``patch`` applied; a ``None`` value removes the field (back to its default)."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


class UpstreamAdmin:
    """See the module docstring."""

    def __init__(
        self,
        store: RegistryStore,
        *,
        reserved: Callable[[], Iterable[str]] = lambda: (),
        bus: Any = None,
        on_change: Callable[[], Awaitable[None]] | None = None,
        probe: bool = True,
        guard: AddressGuard | None = None,
    ) -> None:
        self.store = store
        self.guard = guard  # tenants' http URLs (router/upstreams/url_guard.py); None: not checked
        self.reserved = reserved  # names the manifests (and the admin server) use
        self.bus = bus
        self.on_change = on_change
        self.probe = probe

    # --- reads --------------------------------------------------------------------------
    async def list(self, owner: str) -> dict[str, Any]:
        """The owner's definitions, overrides and secret names (never values)."""
        rows = [r for r in await self.store.load() if r.owner == owner and not r.deleted]
        ups = [
            {"name": r.name, **r.body, "enabled": r.body.get("enabled", True), "revision": r.revision}
            for r in sorted(rows, key=lambda r: r.name) if r.kind == "upstream"
        ]
        ovs = []
        for r in sorted(rows, key=lambda r: r.name):
            if r.kind == "override":
                server, tool = split_override_key(r.name)
                ovs.append({"server": server, "tool": tool, **r.body, "revision": r.revision})
        secrets = sorted(r.name for r in rows if r.kind == "secret")
        return {"upstreams": ups, "overrides": ovs, "secrets": secrets}

    # --- upstreams ----------------------------------------------------------------------
    async def add(self, owner: str, definition: dict[str, Any], *, by: str = "") -> Row:
        data = dict(definition)
        name = check_name(data.get("name", ""))
        spec = parse_definition(data, owner=owner, where=f"upstream {name!r}")
        await self._check_free(owner, name)
        await self._check_live(owner, spec)
        body = spec.model_dump(exclude={"name", "source"}, exclude_defaults=True)
        body["kind"] = spec.kind
        row = await self.store.write(owner, "upstream", name, lambda _cur: body, by=by, must_exist=False)
        await self._changed(owner)
        return row

    async def update(self, owner: str, name: str, patch: dict[str, Any], *, by: str = "") -> Row:
        """Change some fields of a definition (``None`` resets a field); validated as a whole."""
        check_name(name)
        if "name" in patch and patch["name"] != name:
            raise InvalidArguments("name: cannot be changed; remove the upstream and add it again", data={"field": "name"})
        fields = {k: v for k, v in patch.items() if k != "name"}
        current = await self._current(owner, "upstream", name)
        candidate = _strip_none(fields, current.body)
        spec = parse_definition({"name": name, **candidate}, owner=owner, where=f"upstream {name!r}")
        await self._check_live(owner, spec)

        def change(cur: dict[str, Any] | None) -> dict[str, Any]:
            # Applied to the row as it is under the lock: a concurrent patch of other fields survives.
            merged = _strip_none(fields, cur or {})
            parse_definition({"name": name, **merged}, owner=owner, where=f"upstream {name!r}")
            return merged

        row = await self.store.write(owner, "upstream", name, change, by=by, must_exist=True)
        await self._changed(owner)
        return row

    async def set_enabled(self, owner: str, name: str, enabled: bool, *, by: str = "") -> Row:
        return await self.update(owner, name, {"enabled": None if enabled else False}, by=by)

    async def remove(self, owner: str, name: str, *, by: str = "") -> Row:
        check_name(name)
        row = await self.store.write(owner, "upstream", name, None, by=by, must_exist=True)
        await self._changed(owner)
        return row

    # --- overrides ----------------------------------------------------------------------
    async def set_override(self, owner: str, server: str, tool: str, patch: dict[str, Any], *, by: str = "") -> Row:
        """Create or change the override of ``server``'s ``tool`` (``None`` resets a field)."""
        key = override_key(server, tool)
        where = f"override {server}/{tool}"
        current = await self.store.load()
        existing = next((r for r in current if r.key == (owner, "override", key) and not r.deleted), None)
        parse_override(_strip_none(patch, existing.body if existing else {}), where)
        new_name = patch.get("name")
        if new_name:
            taken = {
                r.body.get("name") for r in current
                if r.kind == "override" and not r.deleted and r.owner in (owner, GLOBAL) and r.name != key
            }
            if new_name in taken:
                raise InvalidArguments(f"{where}: name: {new_name!r} is already the name of another overridden tool")

        def change(cur: dict[str, Any] | None) -> dict[str, Any]:
            merged = _strip_none(patch, cur or {})
            return parse_override(merged, where).model_dump(exclude_defaults=True)

        row = await self.store.write(owner, "override", key, change, by=by)
        await self._changed(owner)
        return row

    async def remove_override(self, owner: str, server: str, tool: str, *, by: str = "") -> Row:
        row = await self.store.write(owner, "override", override_key(server, tool), None, by=by, must_exist=True)
        await self._changed(owner)
        return row

    # --- secrets ------------------------------------------------------------------------
    async def set_secret(self, owner: str, name: str, value: str, *, by: str = "") -> Row:
        """Store a write-only secret, referred to as ``${secret:NAME}``; its value is never shown."""
        if not SECRET_NAME_RE.match(name or ""):
            raise InvalidArguments(f"secret name: letters, digits and '_' only, not starting with a digit (got {name!r})")
        if not isinstance(value, str) or not value:
            raise InvalidArguments(f"secret {name}: the value must be a non-empty string")
        row = await self.store.write(owner, "secret", name, lambda _cur: {}, by=by, secret=value)
        await self._changed(owner)
        return row

    async def remove_secret(self, owner: str, name: str, *, by: str = "") -> Row:
        row = await self.store.write(owner, "secret", name, None, by=by, must_exist=True)
        await self._changed(owner)
        return row

    # --- helpers ------------------------------------------------------------------------
    async def _current(self, owner: str, kind: str, name: str) -> Row:
        for r in await self.store.load():
            if r.key == (owner, kind, name) and not r.deleted:
                return r
        raise NotFound(f"no {kind} {name!r}" + (" in the global registry" if owner == GLOBAL else " for this tenant"))

    async def _check_free(self, owner: str, name: str) -> None:
        if name in set(self.reserved()):
            raise InvalidArguments(f"name: duplicate upstream name {name!r} (a manifest already defines it)", data={"field": "name"})
        for r in await self.store.load():
            if r.kind == "upstream" and r.name == name and not r.deleted and r.owner in (owner, GLOBAL):
                where = "the global registry" if r.owner == GLOBAL else "this tenant's registry"
                raise InvalidArguments(f"name: duplicate upstream name {name!r} (already in {where})", data={"field": "name"})

    async def _check_live(self, owner: str, spec: Any) -> None:
        missing = secret_refs(spec) - set(await self.store.secrets(owner, secret_refs(spec)))
        if missing:
            name = sorted(missing)[0]
            raise InvalidArguments(f"no stored secret {name!r}: set it first (upstreams secret-set {name})")
        if self.guard is not None:
            await check_upstream_url(self.guard, owner, spec)  # before the probe: nothing is sent to a refused address
        if not self.probe or not spec.enabled:
            return
        if spec.kind == "stdio" and shutil.which(spec.command, path=None) is None:
            raise InvalidArguments(f"command: {spec.command!r} is not an executable on PATH", data={"field": "command"})
        if spec.kind == "http":
            await probe_url(spec.url)

    async def _changed(self, owner: str) -> None:
        if self.bus is not None:
            try:
                await self.bus.publish(Event(topic=TOPIC, type=TOPIC, data={"owner": owner}))
            except Exception as exc:  # the change is committed; routers find it at their next poll
                log.warning("announcing an upstream registry change failed: %s", exc)
        if self.on_change is not None:
            await self.on_change()
