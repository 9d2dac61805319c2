"""Rules and armed timers in the database (tables.py).

Timers are written behind: the engine notes which (matcher, partition) changed, and
``flush_timers`` writes their current state (upsert, or delete when disarmed) in one
transaction per tenant every ``VSM_CEP_TIMER_FLUSH_MS`` — never a write per event. A crash
loses at most that interval of arming; a clean stop flushes first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from servers.cep.engine import Engine
from servers.cep.matchers import Matcher
from servers.cep.tables import CepRuleRow, CepTimerRow
from vsm_mcp.db import Database
from vsm_mcp.errors import NotFound
from vsm_mcp.models import utcnow


@dataclass
class RuleDef:
    """A stored rule: what ``cep_rule_put`` received, plus the owner that runs its action."""

    tenant: str
    name: str
    source: str
    version: str
    action: dict[str, Any] = field(default_factory=dict)
    owner: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    description: str = ""

    @classmethod
    def of(cls, row: CepRuleRow) -> RuleDef:
        return cls(row.tenant_id, row.name, row.source, row.version, dict(row.action or {}), dict(row.owner or {}),
                   row.enabled, row.description)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "rule": self.source, "version": self.version, "enabled": self.enabled,
                "action": self.action, "description": self.description,
                "owner": {k: v for k, v in self.owner.items() if k != "scopes"}}


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class CepStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- rules -------------------------------------------------------------------------
    async def put_rule(self, rule: RuleDef) -> None:
        async with self.db.tenant(rule.tenant) as s:
            row = (await s.execute(select(CepRuleRow).where(CepRuleRow.name == rule.name))).scalars().first()
            if row is None:
                row = CepRuleRow(tenant_id=rule.tenant, name=rule.name, source=rule.source, version=rule.version)
            row.source, row.version, row.enabled = rule.source, rule.version, rule.enabled
            row.action, row.owner, row.description = rule.action, rule.owner, rule.description
            row.updated_at = utcnow()
            s.add(row)
            # Timers of an older text of the rule cannot be resumed by the new one.
            await s.execute(delete(CepTimerRow).where(col(CepTimerRow.rule) == rule.name,
                                                      col(CepTimerRow.version) != rule.version))

    async def delete_rule(self, tenant: str, name: str) -> None:
        async with self.db.tenant(tenant) as s:
            found = (await s.execute(select(CepRuleRow).where(CepRuleRow.name == name))).scalars().first()
            if found is None:
                raise NotFound(f"no CEP rule named {name!r}")
            await s.delete(found)
            await s.execute(delete(CepTimerRow).where(col(CepTimerRow.rule) == name))

    async def rules(self, tenant: str) -> list[RuleDef]:
        async with self.db.tenant(tenant) as s:
            rows = (await s.execute(select(CepRuleRow).order_by(col(CepRuleRow.name)))).scalars().all()
        return [RuleDef.of(r) for r in rows]

    async def tenants(self) -> list[str]:
        async with self.db.system() as s:
            return [str(r[0]) for r in (await s.execute(text("SELECT id FROM tenants"))).all()]

    # --- timers ------------------------------------------------------------------------
    async def timers(self, tenant: str) -> list[CepTimerRow]:
        async with self.db.tenant(tenant) as s:
            return list((await s.execute(select(CepTimerRow))).scalars().all())

    async def flush_timers(self, engine: Engine) -> int:
        """Write the timers that changed since the last flush; returns rows touched."""
        if not engine.dirty:
            return 0
        dirty, engine.dirty = engine.dirty, {}
        by_tenant: dict[str, list[tuple[Matcher, str]]] = {}
        for matcher, key in dirty.values():
            by_tenant.setdefault(matcher.tenant, []).append((matcher, key))
        insert = pg_insert if self.db.is_postgres else sqlite_insert
        touched = 0
        try:
            for tenant, items in by_tenant.items():
                now = utcnow()
                upserts, gone = [], []
                for matcher, key in items:
                    state = matcher.timer_state(key) if engine.matcher(tenant, matcher.name) is matcher else None
                    if state is None:
                        gone.append((matcher.name, key_hash(key)))
                    else:
                        upserts.append({"tenant_id": tenant, "created_at": now, "updated_at": now,
                                        "rule": matcher.name, "key_hash": key_hash(key), "version": matcher.version,
                                        "deadline": float(state["deadline"]), "state": {"key": key, **state}})
                async with self.db.tenant(tenant) as s:
                    for rule, kh in gone:
                        await s.execute(delete(CepTimerRow).where(col(CepTimerRow.rule) == rule,
                                                                  col(CepTimerRow.key_hash) == kh))
                    if upserts:
                        stmt = insert(CepTimerRow.__table__)  # type: ignore[attr-defined]
                        stmt = stmt.on_conflict_do_update(
                            index_elements=["tenant_id", "rule", "key_hash"],
                            set_={c: stmt.excluded[c] for c in ("version", "deadline", "state", "updated_at")},
                        )
                        await s.execute(stmt, upserts)
                touched += len(items)
        except BaseException:
            # Keep what was not written for the next round (newer changes win).
            for k, v in dirty.items():
                engine.dirty.setdefault(k, v)
            raise
        return touched
