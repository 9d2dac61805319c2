"""The CEP engine on the bus: rules loaded per tenant, events in, matches out.

Three tasks run while ``running()`` is entered:

* the **consumer** reads every tenant event from the bus (the named work queue
  ``VSM_CEP_QUEUE`` — durable on RabbitMQ, so events published while the router is down are
  matched when it is back) and runs it through the engine;
* the **clock** moves the engine with the wall clock, so an absence deadline or a tumbling
  window end fires on time even when no event comes;
* the **flusher** writes changed timers (store.py) behind.

A match is published as ``cep.match.<rule>`` at once; its action (a tool call or a plan, run
as the rule's owner through the router's dispatcher) is queued to an action worker so a slow
tool never holds up matching. Events without a tenant (system traffic) are not matched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from servers.cep.engine import Engine
from servers.cep.matchers import Match
from servers.cep.store import CepStore, RuleDef
from vsm_mcp.bus import Bus, Subscription
from vsm_mcp.bus.events import Event

log = logging.getLogger("vsm_mcp.cep")

ActionRunner = Callable[[RuleDef, Match], Awaitable[None]]
CLOCK_TICK_S = 0.25  # longest sleep of the clock task: a deadline armed meanwhile fires this late at most


class CepRuntime:
    def __init__(
        self,
        bus: Bus,
        store: CepStore | None,
        *,
        actions: ActionRunner | None = None,
        queue: str = "cep.matchers",
        flush_s: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.store = store
        self.engine = Engine()
        self.engine.track_dirty = store is not None
        self.defs: dict[tuple[str, str], RuleDef] = {}
        self.actions = actions
        self.queue = queue
        self.flush_s = flush_s
        self.clock = clock
        self.matched = 0
        self.action_failures = 0
        self._pending: asyncio.Queue[tuple[RuleDef, Match]] = asyncio.Queue(maxsize=10_000)
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._users = 0

    # --- rules -------------------------------------------------------------------------
    def install(self, rule: RuleDef) -> None:
        """(Re)install ``rule`` in the engine (compiles it; RuleError on a bad text)."""
        if rule.enabled:
            self.engine.put(rule.tenant, rule.name, rule.source)
        else:
            self.engine.delete(rule.tenant, rule.name)
        self.defs[(rule.tenant, rule.name)] = rule

    def remove(self, tenant: str, name: str) -> None:
        self.engine.delete(tenant, name)
        self.defs.pop((tenant, name), None)

    async def load(self) -> None:
        """Every tenant's rules and armed timers from the store (at start)."""
        if self.store is None:
            return
        for tenant in await self.store.tenants():
            for rule in await self.store.rules(tenant):
                try:
                    self.install(rule)
                except Exception:  # a rule that no longer compiles must not stop the others
                    log.exception("CEP rule %s/%s does not compile; skipped", tenant, rule.name)
            for row in await self.store.timers(tenant):
                matcher = self.engine.matcher(tenant, row.rule)
                if matcher is not None and matcher.version == row.version:
                    state = dict(row.state)
                    matcher.restore(str(state.pop("key")), state)

    # --- running -------------------------------------------------------------------------
    @asynccontextmanager
    async def running(self) -> AsyncIterator[CepRuntime]:
        """Match while at least one holder is inside (refcounted, like the server's lifespan)."""
        self._users += 1
        if self._users == 1:
            await self.load()
            self._sub = await self.bus.subscribe(["#"], queue=self.queue)
            self._tasks = [
                asyncio.create_task(self._consume(self._sub), name="cep-consumer"),
                asyncio.create_task(self._tick(), name="cep-clock"),
                asyncio.create_task(self._act(), name="cep-actions"),
            ]
            if self.store is not None:
                self._tasks.append(asyncio.create_task(self._flush_loop(), name="cep-timer-flush"))
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0:
                await self._stop()

    async def _stop(self) -> None:
        if self._sub is not None:
            await self._sub.aclose()
            self._sub = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.store is not None:
            await self.store.flush_timers(self.engine)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until the consumer has caught up and queued actions are done (tests, benchmarks)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            sub_queue = getattr(self._sub, "queue", None)
            if (sub_queue is None or sub_queue.empty()) and self._pending.empty() and self._idle.is_set():
                return
            await asyncio.sleep(0.005)

    async def _consume(self, sub: Subscription) -> None:
        async for event in sub:
            self._idle.clear()
            if event.tenant:
                try:
                    matches = self.engine.process(event)
                except Exception:  # one bad event (or rule bug) must not stop matching for all
                    log.exception("CEP failed on event %s (%s)", event.id, event.topic)
                    matches = []
                for m in matches:
                    await self._emit(event.tenant, m)
            self._idle.set()

    async def _tick(self) -> None:
        while True:
            now = self.clock()
            nd = self.engine.next_deadline()
            delay = CLOCK_TICK_S if nd is None else min(CLOCK_TICK_S, max(0.0, nd - now))
            await asyncio.sleep(delay)
            for m in self.engine.advance(self.clock()):
                await self._emit(m.tenant, m)

    async def _flush_loop(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.store.flush_timers(self.engine)
            except asyncio.CancelledError:
                raise
            except Exception:  # database down: keep the changes, retry next round
                log.warning("CEP timer flush failed; will retry", exc_info=True)

    async def _emit(self, tenant: str, m: Match) -> None:
        self.matched += 1
        rule = self.defs.get((tenant, m.rule))
        data = {**m.to_dict(), "version": rule.version if rule else ""}
        try:
            await self.bus.publish(Event(topic=f"cep.match.{m.rule}", tenant=tenant, type="cep.match", data=data))
        except Exception:
            log.warning("could not publish cep.match.%s", m.rule, exc_info=True)
        if rule is not None and rule.action and self.actions is not None:
            try:
                self._pending.put_nowait((rule, m))
            except asyncio.QueueFull:
                self.action_failures += 1
                log.warning("CEP action queue full; action of %s dropped", m.rule)

    async def _act(self) -> None:
        assert self._pending is not None
        while True:
            rule, m = await self._pending.get()
            try:
                if self.actions is not None:
                    await self.actions(rule, m)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reported on the bus; the rule keeps matching (durable: the workflow reports)
                self.action_failures += 1
                log.warning("CEP action of %s failed: %s", rule.name, exc)
                with suppress(Exception):
                    await self.bus.publish(Event(topic=f"cep.action.failed.{rule.name}", tenant=rule.tenant,
                                                 type="cep.action", data={"rule": rule.name, "error": str(exc)[:500]}))
            finally:
                self._pending.task_done()

    def status(self) -> dict[str, Any]:
        return {"rules": len(self.defs), "matched": self.matched, "action_failures": self.action_failures,
                "armed_timers": sum(len(m.state) for m in self.engine.all_matchers()
                                    if m.rule.kind in ("absence",) or m.rule.tumbling)}
