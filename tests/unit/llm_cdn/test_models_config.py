from __future__ import annotations

import json
from pathlib import Path

import pytest

from servers.llm_cdn.models_config import load_models
from vsm_mcp.errors import ConfigError


def test_inline_json_and_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-1")
    inline = json.dumps([{"name": "a", "target": "openai/x", "fallbacks": ["b"], "api_key_env": "MY_KEY"},
                         {"name": "b", "target": "openai/y", "api_base": "http://h/v1", "ttl_s": 5}])
    t = load_models(inline)
    assert t.names() == ["a", "b"]
    a, b = t.models["a"], t.models["b"]
    assert a.fallbacks == ("b",) and a.api_key == "sk-1" and a.provider == "openai"
    assert b.ttl_s == 5.0 and b.provider == "http://h/v1"
    f = tmp_path / "models.yaml"
    f.write_text("models:\n  - name: e\n    target: openai/emb\n    kind: embedding\n")
    assert load_models(str(f)).models["e"].kind == "embedding"
    assert load_models("").models == {}


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ('[{"name": "a"}]', "'name' and 'target'"),
        ('[{"name": "a", "target": "t", "fallbacks": ["zz"]}]', "unknown model 'zz'"),
        ('[{"name": "a", "target": "t", "colour": 1}]', "unknown key 'colour'"),
        ('[{"name": "a", "target": "t"}, {"name": "a", "target": "u"}]', "defined twice"),
        ('[{"name": "a", "target": "t", "kind": "image"}]', "kind must be"),
        ("{not json", "invalid inline JSON"),
        ("/nonexistent/models.yaml", "no such file"),
        ('{"models": 3}', "expected a list"),
    ],
)
def test_bad_config_names_the_problem(value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_models(value)
    assert needle in info.value.message
