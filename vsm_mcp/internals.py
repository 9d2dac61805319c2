"""Guards for fast paths that rely on a dependency's private internals.

A fast path that reads private attributes of a dependency must (1) pin the dependency to the
range it was tested with, (2) check at start-up that the internals it relies on are there and,
if not, log one line and use the supported path, and (3) have a test that fails when the fast
path is not engaged in the shipped configuration. This module holds the shared checks.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version


def version_in(distribution: str, lowest: str, below: str) -> str | None:
    """None when the installed ``distribution`` is in ``[lowest, below)``; else why not."""
    try:
        have = version(distribution)
    except PackageNotFoundError:
        return f"{distribution} is not installed"
    if not (_key(lowest) <= _key(have) < _key(below)):
        return f"{distribution} {have} is outside the tested range >={lowest},<{below}"
    return None


def _key(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def names_used(cls: type) -> set[str]:
    """Every attribute name the methods of ``cls`` (and its bases) read or assign, from their code."""
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        for member in vars(klass).values():
            func = getattr(member, "__func__", member)
            code = getattr(func, "__code__", None)
            if isinstance(code, types.CodeType):
                names.update(_code_names(code))
    return names


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def missing(cls: type, attributes: Iterable[str]) -> str | None:
    """None when every name is an attribute ``cls`` defines or its methods use; else the first missing."""
    used = names_used(cls) | set(dir(cls))
    gone = [a for a in attributes if a not in used]
    return f"{cls.__module__}.{cls.__qualname__} no longer has {', '.join(gone)}" if gone else None


def nested_code(func: object, qualname: str) -> types.CodeType | None:
    """The code object of the function ``qualname`` defined (at any depth) inside ``func``."""
    code = getattr(func, "__code__", None)
    stack = [code] if isinstance(code, types.CodeType) else []
    while stack:
        c = stack.pop()
        if c.co_qualname == qualname:
            return c
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return None
