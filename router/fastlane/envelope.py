"""JSON-RPC envelope checks in front of the MCP SDK, so a malformed message gets one line.

The SDK validates the envelope with pydantic and answers a malformed one with the validation
error's multi-line text (with documentation URLs), and takes an ``id`` that is an object for a
notification (202, empty body). Here a body is checked before it reaches the SDK, and the first
problem becomes ``-32700 Parse error: …`` or ``-32600 Invalid Request: …`` — one line, naming
the member. Bodies that pass go to the SDK unchanged; calls the fast lane answers never come here.
"""

from __future__ import annotations

from typing import Any

from vsm_mcp import json_fast

PARSE_ERROR, INVALID_REQUEST = -32700, -32600


def _valid_id(rid: Any) -> bool:
    return isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool))


def _message_problem(msg: Any) -> str | None:
    if not isinstance(msg, dict):
        return f"a message must be a JSON object, not {type(msg).__name__ if msg is not None else 'null'}"
    if msg.get("jsonrpc") != "2.0":
        return "'jsonrpc' must be \"2.0\"" if "jsonrpc" in msg else "'jsonrpc': \"2.0\" is missing"
    if "id" in msg and not _valid_id(msg["id"]):
        return "'id' must be a string or an integer"
    if "method" in msg:
        if not isinstance(msg["method"], str) or not msg["method"]:
            return "'method' must be a non-empty string"
        if "params" in msg and msg["params"] is not None and not isinstance(msg["params"], dict):
            return "'params' must be an object"
        return None
    if "id" not in msg or ("result" in msg) == ("error" in msg):
        return "a message needs 'method' (a request or notification) or an 'id' with 'result' or 'error' (a response)"
    return None


def envelope_error(body: bytes) -> tuple[int, str, Any] | None:
    """(code, one-line message, id to answer with) for a malformed body; None when it is fine."""
    try:
        data = json_fast.loads(body)
    except ValueError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "not JSON"
        return PARSE_ERROR, f"Parse error: {detail}", None
    except UnicodeDecodeError:
        return PARSE_ERROR, "Parse error: the body is not UTF-8", None
    if isinstance(data, list):
        if not data:
            return INVALID_REQUEST, "Invalid Request: an empty batch", None
        for i, msg in enumerate(data):
            problem = _message_problem(msg)
            if problem is not None:
                return INVALID_REQUEST, f"Invalid Request: message {i} of the batch: {problem}", None
        return None
    problem = _message_problem(data)
    if problem is None:
        return None
    rid = data.get("id") if isinstance(data, dict) and _valid_id(data.get("id")) else None
    return INVALID_REQUEST, f"Invalid Request: {problem}", rid


def error_body(code: int, message: str, rid: Any = None) -> bytes:
    return json_fast.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})
