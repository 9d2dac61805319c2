"""Step 4 of the pipeline: tool arguments checked against the tool's input schema (2020-12).

Two validators per schema, compiled once per schema hash:

* ``jsonschema_rs`` (Rust) gives the verdict. On the router's hottest path the pure-Python
  ``jsonschema`` cost 25–30 µs per call inside the running server (6 µs in a warm
  micro-benchmark; the rest is cache misses) — the largest single item of the router's own
  work on a routed call. The Rust verdict costs well under 1 µs.
* ``jsonschema`` (Python) explains a rejection: ``best_match`` names the deepest, most relevant
  field, and our error messages and ``data`` come from it. It is also the judge when the two
  disagree (an argument the Python validator accepts is accepted), so the Rust side can only
  make a call faster, never stricter.

A schema the Rust side cannot compile offline (a remote ``$ref``, a keyword it rejects) is left
to the Python validator alone; a schema that is invalid for both means the upstream's schema is
broken, and the upstream judges the arguments itself.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from vsm_mcp.errors import InvalidArguments

_MAX_CACHED = 50_000


class ArgumentSchema:
    """The compiled validators of one input schema."""

    __slots__ = ("fast", "full")

    def __init__(self, schema: dict[str, Any]) -> None:
        # Imported at the first compile (once per schema): a router's start-up does not need it.
        from jsonschema import Draft202012Validator, validators
        from jsonschema.exceptions import SchemaError

        cls = validators.validator_for(schema, default=Draft202012Validator)
        try:
            cls.check_schema(schema)
            self.full: Any = cls(schema)
        except SchemaError:
            self.full = None
        self.fast: Any = None
        if self.full is not None:
            try:
                # offline: a remote $ref must never make a call fetch something from the network
                self.fast = jsonschema_rs.validator_for(schema, offline=True)
            except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError, TypeError):
                self.fast = None

    def check(self, arguments: dict[str, Any], tool: str) -> None:
        """Raise InvalidArguments naming the offending field; return when the arguments fit."""
        if self.full is None:
            return
        if self.fast is not None:
            try:
                if self.fast.is_valid(arguments):
                    return
            except (ValueError, TypeError, OverflowError):
                pass  # an argument the Rust side cannot represent: the Python validator decides
        from jsonschema.exceptions import best_match  # a rejection: the module is loaded by now

        err = best_match(self.full.iter_errors(arguments))
        if err is None:
            return
        path = "/".join(str(p) for p in err.absolute_path)
        field = path or (
            err.message.split("'")[1] if err.validator == "required" and "'" in err.message else ""
        )
        where = f"argument {field!r}" if field else "arguments"
        raise InvalidArguments(
            f"invalid {where} for tool {tool!r}: {err.message}",
            data={"tool": tool, "field": field, "schema_path": "/".join(str(p) for p in err.absolute_schema_path)},
        )


class ArgumentSchemas:
    """``ArgumentSchema`` per schema hash, compiled on first use."""

    def __init__(self) -> None:
        self._cache: dict[str, ArgumentSchema] = {}

    def get(self, schema_hash: str, schema: dict[str, Any] | None) -> ArgumentSchema:
        compiled = self._cache.get(schema_hash)
        if compiled is None:
            if len(self._cache) > _MAX_CACHED:
                self._cache.clear()
            compiled = self._cache[schema_hash] = ArgumentSchema(schema or {"type": "object"})
        return compiled
