"""Request fingerprints: sha256 of a canonical JSON of everything that changes the answer.

Included: every request field except the ones listed in ``IGNORED_FIELDS`` (so an unknown,
possibly answer-changing field makes a different key — the safe direction). Normalised:

* object key order (``sort_keys``) and JSON whitespace (compact separators);
* JSON carried *inside strings*, i.e. a tool call's ``arguments`` and a ``json_schema`` given as a
  string: parsed and re-serialised canonically when it parses, kept verbatim otherwise;
* numbers: ``0`` and ``0.0`` are the same temperature (integral floats become ints);
* ``max_completion_tokens`` is the newer name of ``max_tokens``.

Ignored: request ids, the ``user`` field, ``stream`` / ``stream_options`` (a cached answer replays
as a stream), ``metadata``, ``store``, timeouts and credentials. The tenant is not part of the
key; caches are partitioned by tenant instead. docs/llm_cdn.md has the full rationale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

IGNORED_FIELDS: frozenset[str] = frozenset({
    "user", "request_id", "stream", "stream_options", "metadata", "store", "timeout", "api_key",
    "api_base", "extra_headers", "idempotency_key", "cache", "x_request_id",
})
"""Fields that never change the answer (or are transport concerns)."""

FIELD_ALIASES: Mapping[str, str] = {"max_completion_tokens": "max_tokens"}

_JSON_STRING_KEYS = frozenset({"arguments"})


def _number(v: float) -> float | int:
    if v != v or v in (float("inf"), float("-inf")):
        return v  # json.dumps renders these as NaN/Infinity; rare enough to keep as-is
    return int(v) if v.is_integer() else v


def _canon(value: Any, key: str = "") -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        if key in _JSON_STRING_KEYS:
            try:
                return {"$json": _canon(json.loads(value))}
            except ValueError:
                return value
        return value
    if isinstance(value, Mapping):
        return {str(k): _canon(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return value


def canonical_request(request: Mapping[str, Any], kind: str = "chat") -> dict[str, Any]:
    """The answer-changing part of ``request`` in canonical form (before serialisation)."""
    out: dict[str, Any] = {"$kind": kind}
    for key, value in request.items():
        if key in IGNORED_FIELDS or value is None:
            continue
        out[FIELD_ALIASES.get(key, key)] = _canon(value, key)
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def fingerprint(request: Mapping[str, Any], kind: str = "chat") -> str:
    """sha256 hex of the canonical JSON of the answer-changing fields of ``request``."""
    return hashlib.sha256(canonical_json(canonical_request(request, kind)).encode()).hexdigest()


def params_fingerprint(request: Mapping[str, Any], kind: str = "chat") -> str:
    """Fingerprint of everything but the messages: the semantic cache's "same model/params" bucket."""
    rest = {k: v for k, v in request.items() if k != "messages"}
    return fingerprint(rest, kind + "-params")
