"""The query lexicon (router/registry/lexicon.toml): expansion, the query's action, the tool's."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.registry.lexicon import Lexicon, default_lexicon
from router.registry.tool_text import stem
from vsm_mcp.errors import ConfigError


def test_the_shipped_lexicon_loads_and_every_group_has_words() -> None:
    lex = default_lexicon()
    assert len(lex.groups) >= 20 and all(g.phrases for g in lex.groups)


def test_a_query_word_brings_its_group_at_the_lower_weight() -> None:
    terms, actions = default_lexicon().expand("remember a fact", {"remember": 1.0, "fact": 1.0}, 0.3)
    assert terms["remember"] == 1.0 and terms[stem("store")] == 0.3 and terms[stem("belief")] == 0.3
    assert actions == {"store"}


def test_the_first_verb_is_the_action_and_a_later_verb_its_object() -> None:
    terms, actions = default_lexicon().expand("block deletes outside business hours", {}, 0.3)
    assert actions == {"create"}
    assert stem("policy") in terms and stem("remove") not in terms  # "deletes" is what is blocked


def test_phrases_match_as_a_whole() -> None:
    terms, _ = default_lexicon().expand("ask a language model", {}, 0.3)
    assert "llm" in terms
    alone, _ = default_lexicon().expand("the language of the docs", {}, 0.3)
    assert "llm" not in alone


def test_tool_names_say_their_actions() -> None:
    lex = default_lexicon()
    assert lex.tool_actions("get_file_info") == {"read"}
    assert {"create", "update", "store"} <= lex.tool_actions("policy_put")
    assert lex.tool_actions("maintenance_on") == frozenset()


def test_related_words_share_a_group() -> None:
    assert stem("assert") in default_lexicon().related(stem("remember"))
    assert default_lexicon().related("zzz") == {"zzz"}


def test_a_bad_lexicon_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "lex.toml"
    bad.write_text('[[group]]\naction = "x"\n')
    with pytest.raises(ConfigError, match=r"lex.toml: group 1 needs 'words'"):
        Lexicon.load(bad)
    bad.write_text("[[group]\n")
    with pytest.raises(ConfigError, match="lex.toml"):
        Lexicon.load(bad)
