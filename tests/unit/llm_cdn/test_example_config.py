"""The OpenCode example points its LLM provider at our OpenAI-compatible edge."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_opencode_provider_uses_the_edge() -> None:
    oc = json.loads((ROOT / "examples" / "opencode.json").read_text())
    provider = oc["provider"]["vsm"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"]["baseURL"] == "http://127.0.0.1:8765/v1"
    assert oc["model"].split("/", 1)[0] == "vsm" and oc["model"].split("/", 1)[1] in provider["models"]
