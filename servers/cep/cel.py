"""CEL expressions over an event envelope: cel-python parses and defines the meaning; a closure
compiler makes the common cases fast.

cel-python's evaluator costs 150-400 µs per evaluation (an activation is cloned and the
expression re-walked each time), which alone would spend the whole per-event budget of the
CEP engine. So an expression is compiled twice from cel-python's own parse tree:

* a **fast closure** for a typed subset — literals (int, double, plain strings, bool, null),
  identifiers, ``a.b``, ``a[i]``, ``has()``, ``! - && || ?:``, ``== != < <= > >= in``,
  ``+ - *`` on same-typed operands, ``size()``, ``startsWith/endsWith/contains``, list literals;
* the **cel-python program** (``InterpretedRunner``), the reference.

The closure handles a case only when the operand types make CEL's answer unambiguous (the
same Python type on both sides of a comparison, say); anything else — mixed int/double,
``/`` and ``%``, macros, regexes, timestamps — raises ``_Defer`` and that one evaluation is
handed to cel-python. So the answer is always cel-python's (tests/unit/cep/test_cel.py checks
this with random expressions), and the fast path is only ever faster, never different.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from functools import cache
from typing import Any, cast

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError, CELParser
from celpy.evaluation import CELEvalError
from lark import Token
from lark import Tree as _LarkTree

from vsm_mcp.errors import InvalidArguments


class CelSyntaxError(InvalidArguments):
    """A CEL expression that does not parse; ``offset`` is the 0-based character of the error."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class _Err:
    """A CEL error value (missing member, index out of range …): absorbed by ``&&``/``||``."""

    __slots__ = ()


ERR = _Err()


class _Defer(Exception):
    """Raised by a fast closure for a case whose meaning only cel-python should decide."""


class _NotFast(Exception):
    """Compile time: the expression uses something outside the fast subset."""


Env = dict[str, Any]
Tree = _LarkTree[Token]
Fn = Callable[[Env], Any]

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_SCALARS = (str, int, float, bool, type(None))
# cel-python's Environment() sets the process recursion limit to 2,500; set here at import, so
# that making the environment later, in the middle of a caller's work, changes nothing global.
sys.setrecursionlimit(2500)


@cache
def _env() -> celpy.Environment:
    """The one environment (InterpretedRunner: the reference semantics, no shared module globals),
    made at the first compile: building cel-python's LALR parser takes a few hundred ms, which
    every router start paid at import although only CEP rules use it."""
    return celpy.Environment()


def _parse(source: str) -> Tree:
    parser: CELParser = _env().cel_parser
    try:
        return parser.parse(source)
    except CELParseError as exc:
        line, column = getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1
        lines = source.split("\n")
        offset = sum(len(x) + 1 for x in lines[: line - 1]) + max(0, column - 1)
        first = str(exc.args[0]).split("\n")[0] if exc.args else "syntax error"
        raise CelSyntaxError(f"CEL syntax error near {first.strip()[:60]!r}", min(offset, len(source))) from None


class Expr:
    """One compiled CEL expression. ``value(env)`` → its JSON-ish value (raises ``CelError``);
    ``test(env)`` → True only when it evaluates to ``true`` (an error is ``false``)."""

    __slots__ = ("source", "fast", "program", "fast_hits", "deferred")

    def __init__(self, source: str) -> None:
        self.source = source
        tree = _parse(source)
        self.program = _env().program(tree)
        try:
            self.fast: Fn | None = _compile(tree)
        except _NotFast:
            self.fast = None
        self.fast_hits = 0
        self.deferred = 0

    def _slow(self, env: Env) -> Any:
        self.deferred += 1
        try:
            out = self.program.evaluate(cast(Any, json_to_cel(env)))
        except Exception:  # CELEvalError, and cel-python's own bugs (an IndexError in its error repr)
            return ERR
        return ERR if isinstance(out, CELEvalError) else _to_json(out)

    def raw(self, env: Env) -> Any:
        """The value, or ``ERR``."""
        if self.fast is not None:
            try:
                out = self.fast(env)
                self.fast_hits += 1
                return out
            except _Defer:
                pass
        return self._slow(env)

    def test(self, env: Env) -> bool:
        return self.raw(env) is True

    def value(self, env: Env) -> Any:
        out = self.raw(env)
        if out is ERR:
            raise InvalidArguments(f"CEL expression {self.source!r} has no value for this event")
        return out


def _to_json(v: Any) -> Any:
    if isinstance(v, celtypes.BoolType):
        return bool(v)
    if isinstance(v, (celtypes.IntType, celtypes.UintType)):
        return int(v)
    if isinstance(v, celtypes.DoubleType):
        return float(v)
    if isinstance(v, celtypes.StringType):
        return str(v)
    if isinstance(v, (celtypes.ListType, list)):
        return [_to_json(x) for x in v]
    if isinstance(v, (celtypes.MapType, dict)):
        return {str(_to_json(k)): _to_json(x) for k, x in v.items()}
    if isinstance(v, celtypes.BytesType):
        return bytes(v).decode("utf-8", "replace")
    if v is None or isinstance(v, (str, int, float)):
        return v
    return str(v)


# --- the closure compiler ------------------------------------------------------------------

def _kids(t: Tree) -> list[Any]:
    return list(t.children)


def _compile(t: Any) -> Fn:
    if not isinstance(t, _LarkTree):
        raise _NotFast()
    rule = str(t.data)
    handler = _RULES.get(rule)
    if handler is None:
        raise _NotFast()
    return handler(t)


def _passthrough(t: Tree) -> Fn:
    kids = _kids(t)
    if len(kids) != 1:
        raise _NotFast()
    return _compile(kids[0])


def _expr(t: Tree) -> Fn:
    kids = _kids(t)
    if len(kids) == 1:
        return _compile(kids[0])
    c, a, b = (_compile(k) for k in kids)

    def ternary(env: Env) -> Any:
        cv = c(env)
        if cv is ERR:
            return ERR
        if type(cv) is not bool:
            raise _Defer()
        return a(env) if cv else b(env)

    return ternary


def _junction(t: Tree, absorbing: bool) -> Fn:
    """``||`` (``absorbing`` True) or ``&&`` (False): the absorbing value on either side wins,
    even over an error on the other; two identity values give the identity; anything else defers."""
    kids = _kids(t)
    if len(kids) == 1:
        return _compile(kids[0])
    a, b = _compile(kids[0]), _compile(kids[1])
    identity = not absorbing

    def junction(env: Env) -> Any:
        av = a(env)
        if av is absorbing:
            return absorbing
        if av is not identity and av is not ERR:
            raise _Defer()
        bv = b(env)
        if bv is absorbing:
            return absorbing
        if bv is not identity and bv is not ERR:
            raise _Defer()
        return ERR if (av is ERR or bv is ERR) else identity

    return junction


def _or(t: Tree) -> Fn:
    return _junction(t, True)


def _and(t: Tree) -> Fn:
    return _junction(t, False)


def _same_scalar(a: Any, b: Any) -> bool:
    return type(a) is type(b) and type(a) in (str, int, float, bool, type(None))


def _relation(t: Tree) -> Fn:
    kids = _kids(t)
    if len(kids) == 1:
        return _compile(kids[0])
    op_tree, right = kids
    op = str(op_tree.data)
    a, b = _compile(_kids(op_tree)[0]), _compile(right)
    if op in ("relation_eq", "relation_ne"):
        want = op == "relation_eq"

        def eq(env: Env) -> Any:
            av, bv = a(env), b(env)
            if av is ERR or bv is ERR:
                return ERR
            if not _same_scalar(av, bv):
                raise _Defer()
            return (av == bv) is want

        return eq
    if op == "relation_in":

        def in_(env: Env) -> Any:
            av, bv = a(env), b(env)
            if av is ERR or bv is ERR:
                return ERR
            if type(bv) is list and type(av) in (str, int, float, bool) and all(type(x) is type(av) for x in bv):
                return av in bv
            if type(bv) is dict and type(av) is str:
                return av in bv
            raise _Defer()

        return in_
    cmp = _CMP.get(op)
    if cmp is None:
        raise _NotFast()

    def order(env: Env) -> Any:
        av, bv = a(env), b(env)
        if av is ERR or bv is ERR:
            return ERR
        if type(av) is not type(bv) or type(av) not in (str, int, float, bool):
            raise _Defer()
        return cmp(av, bv)

    return order


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "relation_lt": lambda x, y: x < y,
    "relation_le": lambda x, y: x <= y,
    "relation_gt": lambda x, y: x > y,
    "relation_ge": lambda x, y: x >= y,
}


def _arith(t: Tree) -> Fn:
    kids = _kids(t)
    if len(kids) == 1:
        return _compile(kids[0])
    op_tree, right = kids
    op = str(op_tree.data)
    if op not in ("addition_add", "addition_sub", "multiplication_mul"):
        raise _NotFast()  # / and % follow CEL's own rules (truncation, division by zero): cel-python's
    a, b = _compile(_kids(op_tree)[0]), _compile(right)

    def arith(env: Env) -> Any:
        av, bv = a(env), b(env)
        if av is ERR or bv is ERR:
            return ERR
        ta = type(av)
        if ta is not type(bv):
            raise _Defer()
        if ta is int:
            out = av + bv if op == "addition_add" else av - bv if op == "addition_sub" else av * bv
            if not _INT_MIN <= out <= _INT_MAX:
                raise _Defer()
            return out
        if ta is float:
            return av + bv if op == "addition_add" else av - bv if op == "addition_sub" else av * bv
        if ta is str and op == "addition_add":
            return av + bv
        raise _Defer()

    return arith


def _unary(t: Tree) -> Fn:
    kids = _kids(t)
    if len(kids) == 1:
        return _compile(kids[0])
    op = str(kids[0].data)
    inner = _compile(kids[1])
    if op == "unary_not":

        def not_(env: Env) -> Any:
            v = inner(env)
            if v is ERR:
                return ERR
            if type(v) is not bool:
                raise _Defer()
            return not v

        return not_
    if op == "unary_neg":

        def neg(env: Env) -> Any:
            v = inner(env)
            if v is ERR:
                return ERR
            if type(v) is float or (type(v) is int and v != _INT_MIN):
                return -v
            raise _Defer()

        return neg
    raise _NotFast()


def _member(t: Tree) -> Fn:
    kids = _kids(t)
    if len(kids) != 1:
        raise _NotFast()
    k = kids[0]
    rule = str(k.data)
    if rule == "primary":
        return _primary(k)
    if rule == "member_dot":
        inner, name = _compile(_kids(k)[0]), str(_kids(k)[1])

        def dot(env: Env) -> Any:
            v = inner(env)
            if v is ERR:
                return ERR
            if type(v) is not dict:
                raise _Defer()
            return v.get(name, ERR)

        return dot
    if rule == "member_index":
        inner, index = _compile(_kids(k)[0]), _compile(_kids(k)[1])

        def idx(env: Env) -> Any:
            v, i = inner(env), index(env)
            if v is ERR or i is ERR:
                return ERR
            if type(v) is dict and type(i) is str:
                return v.get(i, ERR)
            if type(v) is list and type(i) is int and i >= 0:
                return v[i] if i < len(v) else ERR
            raise _Defer()

        return idx
    if rule == "member_dot_arg":
        return _method(k)
    raise _NotFast()


_METHODS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": str.__contains__,
}


def _method(t: Tree) -> Fn:
    kids = _kids(t)
    if len(kids) != 3 or str(kids[1]) not in _METHODS:
        raise _NotFast()
    fn = _METHODS[str(kids[1])]
    target = _compile(kids[0])
    args = _kids(kids[2])
    if len(args) != 1:
        raise _NotFast()
    arg = _compile(args[0])

    def method(env: Env) -> Any:
        v, a = target(env), arg(env)
        if v is ERR or a is ERR:
            return ERR
        if type(v) is str and type(a) is str:
            return fn(v, a)
        raise _Defer()

    return method


def _primary(t: Tree) -> Fn:
    k = _kids(t)[0]
    rule = str(k.data)
    if rule == "ident":
        name = str(_kids(k)[0])
        return lambda env: env.get(name, ERR)
    if rule == "literal":
        value = _literal(str(_kids(k)[0]))
        return lambda env: value
    if rule == "paren_expr":
        return _compile(_kids(k)[0])
    if rule == "list_lit":
        items = [_compile(x) for x in (_kids(_kids(k)[0]) if _kids(k) else [])]

        def lst(env: Env) -> Any:
            out = [f(env) for f in items]
            return ERR if any(x is ERR for x in out) else out

        return lst
    if rule == "ident_arg":
        return _function(k)
    raise _NotFast()


def _function(t: Tree) -> Fn:
    kids = _kids(t)
    name = str(kids[0])
    args = _kids(kids[1]) if len(kids) > 1 else []
    if name == "size" and len(args) == 1:
        arg = _compile(args[0])

        def size(env: Env) -> Any:
            v = arg(env)
            if v is ERR:
                return ERR
            if type(v) in (str, list, dict):
                return len(v)
            raise _Defer()

        return size
    if name == "has" and len(args) == 1:
        return _has(args[0])
    raise _NotFast()


def _has(t: Tree) -> Fn:
    # has(a.b): descend the single-child chain to the member_dot node.
    node: Any = t
    while isinstance(node, _LarkTree) and len(node.children) == 1 and str(node.data) != "member_dot":
        node = node.children[0]
    if not isinstance(node, _LarkTree) or str(node.data) != "member_dot":
        raise _NotFast()
    inner, name = _compile(_kids(node)[0]), str(_kids(node)[1])

    def has(env: Env) -> Any:
        v = inner(env)
        if type(v) is dict:
            return name in v
        raise _Defer()

    return has


_INT = re.compile(r"-?[0-9]+\Z")
_FLOAT = re.compile(r"-?([0-9]+\.[0-9]*|[0-9]*\.[0-9]+)([eE][+-]?[0-9]+)?\Z|-?[0-9]+[eE][+-]?[0-9]+\Z")


def _literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _INT.match(text):
        v = int(text)
        if not _INT_MIN <= v <= _INT_MAX:
            raise _NotFast()
        return v
    if _FLOAT.match(text):
        return float(text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" and not text.startswith(('"""', "'''")):
        inner = text[1:-1]
        if "\\" not in inner and text[0] not in inner:
            return inner
    raise _NotFast()  # uint, bytes, raw/escaped/triple-quoted strings: cel-python decodes them


_RULES: dict[str, Callable[[Tree], Fn]] = {
    "expr": _expr,
    "conditionalor": _or,
    "conditionaland": _and,
    "relation": _relation,
    "addition": _arith,
    "multiplication": _arith,
    "unary": _unary,
    "member": _member,
    "primary": _primary,
}

__all__ = ["ERR", "CelSyntaxError", "Expr", "Token"]
