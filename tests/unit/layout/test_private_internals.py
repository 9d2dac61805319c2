"""Fast paths on a dependency's private internals: engaged in the shipped configuration, and
their start-up checks really notice a mismatch (so a silent fallback cannot pass CI)."""

from __future__ import annotations

from router.edge import sse_direct
from router.fastlane import hot_protocol
from vsm_mcp.internals import missing, nested_code, version_in
from vsm_mcp.policy import PolicyRuntime, compile_policy, fastcall


def test_the_hot_lane_is_engaged_with_the_pinned_uvicorn() -> None:
    assert hot_protocol.self_check() is None
    assert hot_protocol.http_protocol(True) is hot_protocol.HotLaneProtocol
    assert hot_protocol.http_protocol(False) == "auto"


def test_sse_direct_writes_are_engaged_with_the_pinned_starlette_and_uvicorn() -> None:
    assert sse_direct.self_check() is None
    assert sse_direct.engaged()


def test_the_policy_fast_call_is_engaged_with_the_pinned_wasmtime() -> None:
    assert fastcall.self_check() is None
    runtime = PolicyRuntime()
    assert runtime.fast_calls
    loaded = runtime.load(compile_policy('policy "p"\ndefault allow "ok"\n').wasm)
    assert loaded._pool[0].fast is not None


def test_a_version_outside_the_tested_range_is_named() -> None:
    assert version_in("uvicorn", "0.54", "0.55") is None
    assert "outside the tested range" in (version_in("uvicorn", "0.1", "0.2") or "")
    assert "not installed" in (version_in("no-such-distribution-xyz", "1", "2") or "")


def test_a_missing_private_attribute_is_named() -> None:
    class Base:
        def __init__(self) -> None:
            self.transport = None
            self.cycle = None

    assert missing(Base, ["transport", "cycle"]) is None
    assert "no longer has parser" in (missing(Base, ["transport", "parser"]) or "")


def test_a_nested_sender_is_found_by_qualname() -> None:
    def outer() -> object:
        send = 1

        def _send() -> int:
            return send

        return _send

    code = nested_code(outer, "test_a_nested_sender_is_found_by_qualname.<locals>.outer.<locals>._send")
    assert code is not None and "send" in code.co_freevars
    assert nested_code(outer, "nope") is None


def test_the_pinned_ranges_are_the_checked_ones() -> None:
    # The ranges the start-up checks enforce are the ones pyproject.toml pins.
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    lo, hi = hot_protocol.UVICORN_TESTED
    assert f'"uvicorn>={lo},<{hi}"' in pyproject
    lo, hi = sse_direct.TESTED["starlette"]
    assert f'"starlette>={lo},<{hi}"' in pyproject
    assert '"wasmtime>=51,<52"' in pyproject
