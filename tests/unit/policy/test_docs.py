"""Every policy example in docs/policies.md compiles, and the ABI table names the real exports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vsm_mcp.policy import compile_policy
from vsm_mcp.policy.abi import FUNC_EXPORTS

DOC = (Path(__file__).resolve().parents[3] / "docs" / "policies.md").read_text(encoding="utf-8")
EXAMPLES = [b for b in re.findall(r"```[a-z]*\n(.*?)```", DOC, re.S) if b.lstrip().startswith(("policy", "default"))]


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_documented_examples_compile(source: str) -> None:
    assert compile_policy(source, file="docs/policies.md").doc.rules


def test_the_abi_section_lists_every_export() -> None:
    assert len(EXAMPLES) >= 3
    for name in FUNC_EXPORTS:
        assert f"`{name}`" in DOC or f"`{name}`," in DOC or name in DOC, name
