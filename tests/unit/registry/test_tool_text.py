"""Text preparation for tool search: identifier splitting, stemming, fields."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from router.tool_text import embedding_text, field_tokens, first_sentences, split_identifier, stem, tokenize


def test_split_identifier_handles_camel_snake_kebab_and_acronyms() -> None:
    assert split_identifier("getUserIDs") == ["get", "user", "ids"]
    assert split_identifier("parseURLsFast") == ["parse", "urls", "fast"]
    assert split_identifier("list_dir-v2") == ["list", "dir", "v", "2"]
    assert split_identifier("HTTPServerError") == ["http", "server", "error"]
    assert split_identifier("read_multiple_files") == ["read", "multiple", "files"]


def test_stem_conflates_inflections_but_keeps_distinct_tool_words() -> None:
    assert stem("creating") == stem("created") == stem("create") == stem("creation") == stem("creates")
    assert stem("deleting") == stem("deletion") == stem("delete")
    assert stem("files") == stem("file")
    assert stem("directories") == stem("directory")
    assert stem("running") == stem("run")
    assert stem("server") != stem("serve")
    assert stem("status") == "status"


def test_tokenize_drops_stopwords() -> None:
    assert tokenize("Show me the contents of my file") == ["show", "content", "fil"]


@given(st.text(max_size=60))
def test_tokenize_never_fails_and_yields_lowercase_words(text: str) -> None:
    for token in tokenize(text):
        assert token and token == token.lower() and token.isalnum()


def test_fields_and_embedding_text_include_parameters() -> None:
    schema = {
        "type": "object",
        "properties": {
            "maxLines": {"type": "integer", "description": "How many lines to return"},
            "filter": {"type": "object", "properties": {"pathGlob": {"type": "string"}}},
        },
    }
    fields = field_tokens("tail_log", "", "Read the end of a log.", schema, "desktop-commander")
    assert fields["name"] == ["tail", "log"] and fields["server"] == ["desktop", "commander"]
    assert {"max", "lin", "path", "glob"} <= set(fields["params"])
    text = embedding_text("tail_log", "", "Read the end of a log.", schema)
    assert text.startswith("tail log") and "max lines" in text and "path glob" in text


def test_first_sentences_keeps_whole_sentences() -> None:
    text = "First sentence here. Second one is longer than the limit allows. Third."
    assert first_sentences(text, 25) == "First sentence here."
    assert first_sentences("short", 100) == "short"
