"""Warn about ``VSM_*`` variables that no setting reads — a misspelt ``VSM_PROT`` used to be
ignored silently and the router served on the default port.

One line per unknown variable, naming the closest valid one when there is a close one
(difflib, the way git suggests commands). Variables vsm-mcp reads outside ``Settings``
(``VSM_API_KEY`` for local clients, ``VSM_TEST_*`` of the test suite) are known too.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping

PREFIX = "VSM_"
OTHER_KNOWN = frozenset({"VSM_API_KEY"})
OTHER_PREFIXES = ("VSM_TEST_",)


def known_names(fields: Iterable[str]) -> set[str]:
    return {PREFIX + f.upper() for f in fields} | OTHER_KNOWN


def unknown_variables(fields: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per ``VSM_*`` variable in ``environ`` that is not a setting."""
    env = os.environ if environ is None else environ
    known = known_names(fields)
    lines = []
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known or upper.startswith(OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; see .env.example for the settings"
        lines.append(f"warning: {name} is not a vsm-mcp setting and is ignored{hint}")
    return lines
