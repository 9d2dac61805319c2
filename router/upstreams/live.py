"""Keep the running upstream set equal to manifests ⊕ the registry, on every replica, without restarts.

``LiveUpstreams`` belongs to a ``RouterRuntime``. It holds the replica's copy of the registry
(router/upstreams/registry_state.py) and, whenever that copy or a manifest file changes, computes
the wanted set of upstreams and overrides and hands it to ``RouterRuntime.reconcile`` (start
what is new, drain and stop what is gone, restart what changed) and ``Catalog.set_overrides``.

It learns of changes three ways, each enough on its own:

* a write made through this process (``admin.on_change``) — applied before the write returns;
* ``upstreams.changed`` on the bus — another replica's write, within milliseconds on RabbitMQ;
* a poll of the table's fingerprint every ``VSM_UPSTREAMS_POLL_S`` — catches what the bus lost
  and writes of processes with no shared bus (``vsm-mcp upstreams add`` next to an embedded
  router on SQLite).

Manifest files are watched every ``VSM_MANIFEST_WATCH_S``: a changed file is validated whole
first; a bad one keeps the running set and is reported in one log line (``manifest_error``).

Registry upstreams of a tenant run under the runtime id ``name@tenant`` (``@`` cannot occur in a
name), and the catalog shows their tools to that tenant only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from router.upstreams.admin_ops import TOPIC, UpstreamAdmin
from router.upstreams.definitions import (
    GLOBAL,
    ToolOverride,
    parse_definition,
    parse_override,
    resolve_secrets,
    secret_refs,
    split_override_key,
)
from router.upstreams.manifest import DEFAULT_MANIFEST, UpstreamSpec, load_manifests, manifest_files
from router.upstreams.registry_state import RegistryState
from router.upstreams.store import RegistryStore
from router.upstreams.url_guard import check_upstream_url
from vsm_mcp.errors import ConfigError, VsmError
from vsm_mcp.ssrf import AddressGuard, AllowList

if TYPE_CHECKING:
    from router.runtime import RouterRuntime

log = logging.getLogger(__name__)

Owners = dict[str, tuple[str | None, str]]  # runtime id -> (tenant or None, name shown)


class LiveUpstreams:
    """See the module docstring."""

    def __init__(
        self,
        runtime: RouterRuntime,
        manifest_specs: list[UpstreamSpec],
        manifest_paths: list[str] | None,
        *,
        poll_s: float,
        watch_s: float,
        probe: bool = True,
    ) -> None:
        ctx = runtime.ctx
        self.runtime = runtime
        self.store = RegistryStore(ctx.db)
        self.state = RegistryState()
        self.manifest_specs = list(manifest_specs)
        self.manifest_paths = manifest_paths  # None: specs were given in code, nothing to watch
        self.poll_s = poll_s
        self.watch_s = watch_s
        self.manifest_error = ""
        self.registry_error = ""
        self.applied = 0  # reconciliations done (tests and /readyz read it)
        self._not_started: set[tuple[str, str]] = set()
        self._lock = anyio.Lock()  # one registry read or reconciliation at a time
        self._closed = False  # aclose() ran: no more reads of the registry, no reconciliations
        self._manifest_sig = self._signature() if manifest_paths is not None else ()
        self.guard = AddressGuard(AllowList.parse(ctx.settings.fetch_allow))
        self.admin = UpstreamAdmin(
            self.store,
            reserved=lambda: {s.name for s in self.manifest_specs} | set(runtime.fixed),
            bus=ctx.bus,
            on_change=self.refresh,
            probe=probe,
            guard=self.guard,
        )

    @staticmethod
    def runtime_id(owner: str, name: str) -> str:
        return name if owner == GLOBAL else f"{name}@{owner}"

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self, tg: TaskGroup) -> None:
        """Load the registry once (its upstreams start with the manifests'), then follow changes."""
        await self.refresh(quiet=True)
        if self.poll_s > 0:
            tg.start_soon(self._poll)
        tg.start_soon(self._listen)
        if self.manifest_paths is not None and self.watch_s > 0:
            tg.start_soon(self._watch_manifests)

    async def aclose(self) -> None:
        """Stop following, before the runtime's task group is cancelled: a registry read or a
        reconciliation in flight is waited for (cancelled, its transaction's rollback was cut
        short and SQLAlchemy's pool logged it, at the end of CLI runs) and none starts after."""
        self._closed = True
        with anyio.move_on_after(10):  # a hung database must not hang the shutdown
            async with self._lock:
                pass

    async def refresh(self, *, quiet: bool = False) -> None:
        """Read the registry table, merge it, and apply the result."""
        async with self._lock:
            if self._closed:
                return
            try:
                rows = await self.store.load()
            except Exception as exc:  # no table yet (not migrated) or the database is down: keep running
                msg = f"upstream registry unavailable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if msg != self.registry_error and not quiet:
                    log.warning("%s", msg)
                self.registry_error = msg
                return
            self.registry_error = ""
            self.state.merge(rows)
            await self._apply()

    async def _poll(self) -> None:
        while True:
            await anyio.sleep(self.poll_s)
            async with self._lock:  # so that aclose() waits for this read instead of cutting it short
                if self._closed:
                    return
                try:
                    fingerprint = await self.store.fingerprint()
                except Exception as exc:
                    log.debug("registry poll failed: %s", exc)
                    continue
                changed = fingerprint != self.state.fingerprint()
            if changed:
                await self.refresh()

    async def _listen(self) -> None:
        try:
            sub = await self.runtime.ctx.bus.subscribe([TOPIC])
        except Exception as exc:  # no bus: the poll alone keeps replicas in step
            log.warning("not following %s on the bus (%s); relying on the registry poll", TOPIC, exc)
            return
        try:
            async for _event in sub:
                await self.refresh()
        finally:
            with anyio.CancelScope(shield=True):
                await sub.aclose()

    # --- manifests ------------------------------------------------------------------------
    def _signature(self) -> tuple[tuple[str, int, int], ...]:
        out: list[tuple[str, int, int]] = []
        try:
            files = manifest_files(self.manifest_paths or [DEFAULT_MANIFEST])
        except ConfigError:
            return (("<missing>", 0, 0),)
        for f in files:
            try:
                st = Path(f).stat()
            except OSError:
                continue
            out.append((str(f), st.st_mtime_ns, st.st_size))
        return tuple(out)

    async def _watch_manifests(self) -> None:
        while True:
            await anyio.sleep(self.watch_s)
            sig = self._signature()
            if sig != self._manifest_sig:
                self._manifest_sig = sig
                await self.reload_manifests()

    async def reload_manifests(self) -> bool:
        """Validate the manifest files and apply them; on error keep the running set (one log line)."""
        try:
            specs = load_manifests(self.manifest_paths or None, home=self.runtime.ctx.settings.home)
        except ConfigError as exc:
            self.manifest_error = exc.message
            log.error("manifest reload refused, the running upstreams are kept: %s", exc.message)
            return False
        self.manifest_error = ""
        async with self._lock:
            if self._closed:
                return False
            self.manifest_specs = specs
            await self._apply()
        log.info("manifests reloaded: %d upstreams", len(specs))
        return True

    # --- applying -----------------------------------------------------------------------
    async def _apply(self) -> None:
        desired: dict[str, UpstreamSpec] = {s.name: s for s in self.manifest_specs}
        owners: Owners = {s.name: (None, s.name) for s in self.manifest_specs}
        for row in self.state.live("upstream"):
            rid = self.runtime_id(row.owner, row.name)
            if rid in desired or rid in self.runtime.fixed:
                log.warning("registry upstream %r is shadowed by a manifest entry of the same name", row.name)
                continue
            try:
                spec = parse_definition({"name": row.name, **row.body}, owner=row.owner, where=f"upstream {row.name!r}")
                await check_upstream_url(self.guard, row.owner, spec)  # its name may resolve elsewhere by now
                refs = secret_refs(spec)
                if refs:
                    spec = resolve_secrets(spec, await self.store.secrets(row.owner, refs))
            except VsmError as exc:  # written by a newer version, a secret read failed, a refused URL: skip it
                if (rid, exc.message) not in self._not_started:  # once per reason, not at every poll
                    log.warning("registry upstream %r not started: %s", row.name, exc.message)
                    self._not_started.add((rid, exc.message))
                continue
            desired[rid] = spec.model_copy(update={"name": rid})  # no re-validation: '@' is ours
            owners[rid] = (None if row.owner == GLOBAL else row.owner, row.name)
        overrides: dict[str | None, dict[tuple[str, str], ToolOverride]] = {}
        for row in self.state.live("override"):
            try:
                ov = parse_override(row.body)
            except VsmError as exc:
                log.warning("tool override %r ignored: %s", row.name, exc.message)
                continue
            overrides.setdefault(None if row.owner == GLOBAL else row.owner, {})[split_override_key(row.name)] = ov
        self.runtime.catalog.set_overrides(overrides)
        await self.runtime.reconcile(desired, owners)
        self.applied += 1

    def status(self) -> dict[str, Any]:
        return {
            "registry_rows": len(self.state.rows),
            "manifest_error": self.manifest_error,
            "registry_error": self.registry_error,
        }
