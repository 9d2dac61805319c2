"""Tokens of the policy language. Newlines are insignificant; ``#`` starts a comment."""

from __future__ import annotations

from dataclasses import dataclass

from vsm_mcp.policy.ast import Pos
from vsm_mcp.policy.diagnostics import PolicySyntaxError

KEYWORDS = frozenset(
    {
        "policy", "default", "allow", "deny", "when", "because", "and", "or", "not", "in",
        "contains", "starts_with", "ends_with", "intersects", "true", "false", "has", "count",
    }
)
SYMBOLS = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", "{", "}", ",", ":", ".", "-")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


@dataclass(frozen=True)
class Token:
    kind: str  # "ident" | "keyword" | "string" | "number" | "symbol" | "eof"
    text: str
    pos: Pos
    value: str | float = ""

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of file"
        if self.kind == "string":
            return f"string {self.text}"
        return f"{self.text!r}"


def tokenize(source: str, file: str = "<policy>") -> list[Token]:
    """Split ``source`` into tokens; an unknown character or bad literal raises PolicySyntaxError."""
    tokens: list[Token] = []
    i, line, col = 0, 1, 1
    n = len(source)
    while i < n:
        ch = source[i]
        if ch == "\n":
            i, line, col = i + 1, line + 1, 1
            continue
        if ch in " \t\r":
            i, col = i + 1, col + 1
            continue
        if ch == "#":
            while i < n and source[i] != "\n":
                i += 1
            continue
        pos = Pos(file, line, col)
        if ch.isalpha() or ch == "_":
            j = i
            while j < n and (source[j].isalpha() or source[j] == "_" or _digit(source[j])):
                j += 1
            word = source[i:j]
            tokens.append(Token("keyword" if word in KEYWORDS else "ident", word, pos, word))
        elif _digit(ch):
            j = i
            while j < n and _digit(source[j]):
                j += 1
            if j + 1 < n and source[j] == "." and _digit(source[j + 1]):
                j += 1
                while j < n and _digit(source[j]):
                    j += 1
            if j < n and (source[j].isalpha() or source[j] == "_"):
                raise PolicySyntaxError(f"malformed number {source[i:j + 1]!r}", pos)
            tokens.append(Token("number", source[i:j], pos, float(source[i:j])))
        elif ch == '"':
            j, value = _read_string(source, i, pos)
            tokens.append(Token("string", source[i:j], pos, value))
        else:
            sym = next((s for s in SYMBOLS if source.startswith(s, i)), None)
            if sym is None:
                raise PolicySyntaxError(f"unexpected character {ch!r}", pos)
            tokens.append(Token("symbol", sym, pos, sym))
            j = i + len(sym)
        col += j - i
        i = j
    tokens.append(Token("eof", "", Pos(file, line, col)))
    return tokens


def _digit(ch: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and other characters float() rejects."""
    return "0" <= ch <= "9"


def _read_string(source: str, start: int, pos: Pos) -> tuple[int, str]:
    out: list[str] = []
    j = start + 1
    while j < len(source):
        ch = source[j]
        if ch == '"':
            return j + 1, "".join(out)
        if ch == "\n":
            break
        if ch == "\\":
            esc = source[j + 1] if j + 1 < len(source) else ""
            if esc not in _ESCAPES:
                raise PolicySyntaxError(f"unknown escape \\{esc} in string (use \\\" \\\\ \\n \\t)", pos)
            out.append(_ESCAPES[esc])
            j += 2
            continue
        out.append(ch)
        j += 1
    raise PolicySyntaxError("unterminated string (a string ends with \" on the same line)", pos)
