"""The one way a capability server's tool reports a failure it understood.

A ``VsmError`` raised inside a tool becomes an MCP ``ToolError`` whose text is
``<label>: <message>`` (e.g. ``not_found: bucket 'x' does not exist``), so the caller reads what
was wrong: the SDK hides the text of any other exception.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from vsm_mcp.errors import VsmError

P = ParamSpec("P")
R = TypeVar("R")


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorate an async tool: ``VsmError`` → ``ToolError("<label>: <message>")``."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except VsmError as exc:
            raise ToolError(f"{exc.label}: {exc.message}") from exc

    return wrapper
