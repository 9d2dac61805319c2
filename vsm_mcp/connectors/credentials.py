"""Credentials as ``${ENV}`` references: stored as given, resolved from the environment at each
request, so no secret is ever written to the database, a status answer or a log line."""

from __future__ import annotations

import os
import re

from vsm_mcp.errors import ConfigError, InvalidArguments

REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def check_refs(connector: str, credentials: dict[str, str] | None) -> dict[str, str]:
    """The credentials if every value is a whole ``${NAME}`` reference; else one clear error."""
    out: dict[str, str] = {}
    for key, value in (credentials or {}).items():
        if not isinstance(value, str) or not REF.match(value.strip()):
            raise InvalidArguments(
                f"connector {connector!r}: credential {key!r} must be an environment reference like "
                "'${MY_TOKEN}', never the secret itself"
            )
        out[str(key)] = value.strip()
    return out


def resolve(connector: str, refs: dict[str, str]) -> dict[str, str]:
    """Each reference's current value; a variable that is not set is an error naming it."""
    out: dict[str, str] = {}
    for key, ref in refs.items():
        m = REF.match(ref)
        assert m is not None
        value = os.environ.get(m.group(1))
        if value is None:
            raise ConfigError(f"connector {connector!r}: credential {key!r} refers to ${{{m.group(1)}}}, which is not set")
        out[key] = value
    return out
