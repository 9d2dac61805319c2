"""Text preparation for tool search: identifier splitting, stemming, fields."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from router.registry.tool_text import (
    embedding_text,
    field_tokens,
    first_sentences,
    split_identifier,
    stem,
    tokenize,
)


def test_split_identifier_handles_camel_snake_kebab_and_acronyms() -> None:
    assert split_identifier("getUserIDs") == ["get", "user", "ids"]
    assert split_identifier("parseURLsFast") == ["parse", "urls", "fast"]
    assert split_identifier("list_dir-v2") == ["list", "dir", "v", "2"]
    assert split_identifier("HTTPServerError") == ["http", "server", "error"]
    assert split_identifier("read_multiple_files") == ["read", "multiple", "files"]


def test_a_contraction_s_ending_is_its_word_not_a_term() -> None:
    # split at the apostrophe, "what's" gave every such query a term "s"
    assert split_identifier("what's running") == ["what", "is", "running"]
    assert split_identifier("the page’s input; we'll see; don't") == ["the", "page", "is", "input", "we", "will", "see", "do", "not"]
    assert tokenize("what's still running") == [stem("still"), stem("running")]
    assert split_identifier("'npm run build' on S3") == ["npm", "run", "build", "on", "s", "3"]


def test_stem_conflates_inflections_but_keeps_distinct_tool_words() -> None:
    assert stem("creating") == stem("created") == stem("create") == stem("creation") == stem("creates")
    assert stem("deleting") == stem("deletion") == stem("delete")
    assert stem("files") == stem("file")
    assert stem("directories") == stem("directory")
    assert stem("running") == stem("run")
    assert stem("server") != stem("serve")
    assert stem("status") == "status"
    # an -ed that belongs to the root stays: every form of "embed", "speed", "proceed" meets
    assert stem("embed") == stem("embeds") == stem("embedding") == stem("embedded") == "embed"
    assert stem("speed") == stem("speeding") == stem("speeds")
    assert stem("proceed") == stem("proceeded") == stem("proceeding")
    assert stem("listed") == stem("list") and stem("seeded") == stem("seed")


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


def test_non_english_words_survive_tokenising() -> None:
    # The unseen catalog may hold German, Russian or Chinese descriptions: no script is dropped.
    assert split_identifier("Datei öffnen") == ["datei", "offnen"]
    assert split_identifier("résuméFile") == ["resume", "file"]
    assert split_identifier("Straße") == ["straße"]
    assert split_identifier("Создать каталог") == ["создать", "каталог"]
    assert split_identifier("创建文件夹") == ["创建", "建文", "文件", "件夹"]
    assert split_identifier("file名前") == ["file", "名前"]
    assert tokenize("Résumé") == tokenize("resume")


_LATIN = st.text(alphabet=st.characters(max_codepoint=0x24F, categories=("Lu", "Ll", "Nd", "Pc", "Pd", "Zs")), max_size=40)


@given(_LATIN)
def test_split_identifier_loses_no_latin_letter_or_digit(text: str) -> None:
    # Splitting only cuts words apart: accent-folded and lower-cased, every letter and digit stays.
    import unicodedata

    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    expected = "".join(c for c in folded.lower() if c.isalnum())
    assert "".join(split_identifier(text)) == expected


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,30}", fullmatch=True))
def test_ascii_identifiers_split_as_before(name: str) -> None:
    # The Unicode path must not change how ASCII tool names split (the dev figures depend on it).
    import re

    camel = re.compile(r"[A-Z]+(?=[A-Z][a-z]{2,})|[A-Z]+s(?![a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
    old = [p.lower() for chunk in re.findall(r"[A-Za-z0-9]+", name) for p in camel.findall(chunk)]
    assert split_identifier(name) == old


def test_embedding_text_leads_with_the_server_id() -> None:
    text = embedding_text("read_file", "", "Read a file.", {}, server="desktop-commander")
    assert text == "desktop commander: read file. Read a file"
    assert embedding_text("read_file", "", "", {}) == "read file"  # empty description: name alone
