"""The outcome of evaluating one policy."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vsm_mcp.policy.ast import Effect


@dataclass(frozen=True)
class Decision:
    """``effect`` with the rule that decided (``default`` when no rule matched) and why.

    ``error`` is set when the decision is a fail-closed deny because evaluation itself failed
    (fuel or memory exhausted, a trap, an ABI mismatch)."""

    effect: Effect
    rule: str
    reason: str
    policy: str = ""
    error: str = ""

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
