"""Errors of the policy toolchain, each naming where and what."""

from __future__ import annotations

from vsm_mcp.errors import InvalidArguments
from vsm_mcp.policy.ast import Pos


class PolicyError(InvalidArguments):
    """A policy that cannot be used: syntax, type or ABI problem. The message starts with
    ``file:line:col`` when the problem has a position in the source."""

    def __init__(self, message: str, pos: Pos | None = None) -> None:
        text = f"{pos}: {message}" if pos else message
        data: dict[str, object] = {}
        if pos is not None:
            data = {"file": pos.file, "line": pos.line, "col": pos.col}
        super().__init__(text, data=data)
        self.pos = pos
        self.detail = message


class PolicySyntaxError(PolicyError):
    """The source does not parse."""


class PolicyTypeError(PolicyError):
    """The source parses but uses a fact or operator wrongly."""


class AbiError(PolicyError):
    """A WebAssembly module does not follow the policy ABI (docs/policies.md)."""
