"""The query lexicon (router/registry/lexicon.toml): expansion, the query's action, the tool's."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.registry.index import ToolRegistry
from router.registry.lexicon import Lexicon, default_lexicon
from router.registry.tool_text import stem, tokenize
from vsm_mcp.embeddings import HashEmbedder
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


def test_asking_to_be_told_when_something_happens_asks_for_an_alert_rule() -> None:
    lex = default_lexicon()
    terms, actions = lex.expand("alert me when a login fails three times", {}, 0.3)
    assert actions == {"create"} and terms[stem("monitor")] == 0.3 and terms[stem("watch")] == 0.3
    assert lex.glosses("let me know when plan 4 finishes") == ["create an alert rule that watches for events"]


def test_a_governing_verb_makes_the_later_verb_what_the_rule_is_about() -> None:
    own = {stem(w): 1.0 for w in ("block", "deletes", "business", "hours")}
    terms, actions = default_lexicon().expand("block deletes outside business hours", own, 0.3)
    assert actions == {"create"}
    assert terms[stem("deletes")] == 0.3 and terms["block"] == 1.0  # the object weighs as a lexicon word
    assert terms[stem("put")] == 0.3 and terms[stem("rule")] == 0.3  # "block X" = create a rule about X
    plain, _ = default_lexicon().expand("create a table then delete it", {stem("delete"): 1.0}, 0.3)
    assert plain[stem("delete")] == 1.0  # only a governing verb demotes what follows it
    assert default_lexicon().glosses("block deletes") and not default_lexicon().glosses("delete a file")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("what's inside main.go on my machine", ["file"]),
        ("list ~/Downloads", ["path", "file"]),
        ("tail /var/log/nginx/error.log", ["file", "path"]),
        ("open https://web.dev in a new tab", ["url"]),
        ("look up info about IP 1.1.1.1", ["ip", "address"]),
        ("connect to localhost:5432", ["host", "port"]),
        ("write to bob@example.com", ["email", "address"]),
        ("delete the key session:123 from Redis", []),
        ("create a table", []),
        ("tell me about AS13335", ["autonomous system", "asn"]),
        ("ping fe80::1ff:fe23:4567:890a", ["ip", "address"]),
        ("block 10.0.0.0/8", ["ip", "address", "prefix"]),
        ("show commit 3f2a9c1", ["commit"]),
        ("tag it as v1.2.0", ["version"]),
        ("logs since 2024-05-01", ["date"]),
        ("resize the viewport to 1280x720", ["size", "width", "height"]),
        ("is CVE-2024-3094 fixed", ["vulnerability"]),
        ("ask GPT-4 about UTF-8 and SHA-256", []),
        ("meet at 10:30:00", []),
        ("the version 1.1.1.1 is an address, not a version", ["ip", "address"]),
        ("crawl docs.example.com and make it searchable", ["domain", "site", "url"]),
        ("read README.md and main.py", ["file"]),  # .md and .py are top-level domains too, but not ours
        ("I want leaderboard ranks 1 to 10", ["range", "start", "end"]),
        ("read lines 20-40 and pages 3–5 and items 0..9", ["range", "start", "end"]),
        ("logs for 2024-12 or call 555-1234", []),  # a year and month, a phone number
        ("scale web dynos to 3 from v1.2 to 1.3", []),
    ],
)
def test_things_named_by_shape_bring_their_type(query: str, words: list[str]) -> None:
    lex = default_lexicon()
    assert sorted(lex.entity_words(query)) == sorted(words)
    terms, _ = lex.expand(query, {}, 0.3)
    assert all(terms[stem(part)] == 0.3 for w in words for part in w.split())


def test_a_word_of_a_phrase_is_related_to_the_phrase_group() -> None:
    related = default_lexicon().related_in("outside business hours", [stem("business"), stem("hours")])
    assert stem("weekday") in related[stem("business")]
    assert default_lexicon().related_in("my business", [stem("business")]) == {stem("business"): {stem("business")}}


def test_of_the_action_phrases_at_one_place_the_longest_counts() -> None:
    lex = default_lexicon()
    assert lex.expand("set up a database", {}, 0.3)[1] == {"create"}  # not also "set"
    assert lex.expand("keep an eye on the deploys", {}, 0.3)[1] == {"create"}  # an alert rule, not "keep"
    assert lex.expand("put the file", {}, 0.3)[1] == {"create", "update", "store"}  # one phrase, three groups
    terms, actions = lex.expand("how much space is left", {}, 0.3)
    assert actions == {"read"} and terms[stem("size")] == 0.3  # a group without an action still counts


def test_phrases_match_as_a_whole() -> None:
    terms, _ = default_lexicon().expand("ask a language model", {}, 0.3)
    assert "llm" in terms
    alone, _ = default_lexicon().expand("the language of the docs", {}, 0.3)
    assert "llm" not in alone


def test_tool_names_say_their_actions() -> None:
    lex = default_lexicon()
    assert lex.tool_actions("get_file_info") == {"read"}
    assert lex.tool_actions("storage_stat") == lex.tool_actions("cache_stats") == {"read"}  # stat(2): read metadata
    assert {"create", "update", "store"} <= lex.tool_actions("policy_put")
    assert lex.tool_actions("maintenance_on") == frozenset()
    # a name that says no action takes its description's first word; a name that says one keeps it
    assert lex.tool_actions("port_forward", "Forward a local port") == frozenset()
    assert lex.tool_actions("pod_files", "List the files of a pod") == {"list"}
    assert lex.tool_actions("get_pod", "Delete nothing, read a pod") == {"read"}


@pytest.mark.parametrize(
    ("query", "intent", "embedded"),
    [
        ("how big is video.mp4?", "how big is  ?", "how big is a file?"),
        ("run 'npm run build' in a terminal", "run   in a terminal", "run 'npm run build' in a terminal"),
        ("make a folder called reports/2024 locally", "make a folder called   locally", "make a folder called reports/2024 locally"),
        ("take a snapshot so I can click things", "take a snapshot  ", "take a snapshot"),
        ("read /etc/hosts.conf now", "read   now", "read a path file now"),
        ("look up 1.1.1.1", "look up  ", "look up an ip address"),
        ("put up a 'we'll be right back' page", "put up a 'we'll be right back' page", "put up a 'we'll be right back' page"),
        ("create a table", "create a table", "create a table"),
        ("remember that the user prefers dark mode", "remember that  ", "remember that a fact"),
        ("tell the team that the deploy is done", "tell the team that  ", "tell the team that a message"),
        ("remember the file that I uploaded", "remember the file that I uploaded", "remember the file that I uploaded"),
        ("report that my step failed", "report that my step failed", "report that my step failed"),
        ("approve the plan waiting for me", "approve the plan   for me", "approve the plan waiting for me"),
        ("the build is eating my terminal", "the build is eating my terminal", "the build is eating my terminal"),
    ],
)
def test_literals_name_things_and_do_not_say_what_to_do(query: str, intent: str, embedded: str) -> None:
    lex = default_lexicon()
    assert lex.intent(query) == intent
    assert lex.embed_text(query) == embedded


def test_a_literal_s_words_give_no_action_and_weigh_as_lexicon_words() -> None:
    lex = default_lexicon()
    _, actions = lex.expand("click the 'Add to cart' button", {}, 0.3)
    assert actions == frozenset()  # "Add" is the button's label, not the task
    _, actions = lex.expand("capture a snapshot so I can delete things", {}, 0.3)
    assert "delete" not in actions


def test_a_participle_after_be_is_no_action() -> None:
    lex = default_lexicon()
    assert lex.expand("when was it created", {}, 0.3)[1] == {"read"}  # "when was" asks to read
    assert lex.expand("the file is deleted", {}, 0.3)[1] == frozenset()
    assert lex.expand("was it deleted", {}, 0.3)[1] == frozenset()
    assert lex.expand("create the file", {}, 0.3)[1] == {"create"}


def test_an_action_word_after_a_determiner_is_a_noun() -> None:
    lex = default_lexicon()
    # "the build" is a thing, not a request to build; "show" is what the query asks
    assert lex.expand("the build is eating my terminal; show me the processes", {}, 0.3)[1] == {"read", "list"}
    assert lex.expand("build the project", {}, 0.3)[1] == {"create"}


def test_what_before_things_in_the_plural_asks_which_ones() -> None:
    lex = default_lexicon()
    assert lex.expand("what files are in my Downloads folder?", {}, 0.3)[1] == {"list"}
    assert lex.expand("which files are in my Downloads folder?", {}, 0.3)[1] == {"list"}
    assert lex.expand("what is in the file", {}, 0.3)[1] == {"read"}
    assert lex.expand("what's in the file", {}, 0.3)[1] == {"read"}
    assert lex.expand("what does this field mean", {}, 0.3)[1] == frozenset()


def test_reading_things_in_the_plural_is_listing_them() -> None:
    lex = default_lexicon()
    assert lex.expand("show the alerts of the repo", {}, 0.3)[1] == {"read", "list"}
    assert lex.expand("show the alert", {}, 0.3)[1] == {"read"}


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
    bad.write_text('[[group]]\nwords = ["a"]\n[[entity]]\npattern = "("\nwords = ["x"]\n')
    with pytest.raises(ConfigError, match=r"lex.toml: entity 1: bad pattern"):
        Lexicon.load(bad)
    bad.write_text('[[group]]\nwords = ["a"]\ngoverns = "yes"\n')
    with pytest.raises(ConfigError, match=r"group 1: 'governs' must be true or false"):
        Lexicon.load(bad)


_PIECES = st.sampled_from([
    "read", "the", "file", "main.go", "'npm run build'", "called", "reports/2024", "so I can",
    "click", "things", ";", "1.1.1.1", "AS13335", "v1.2.3", "1280x720", "WEB-12", "and", "then",
    "\"quoted text\"", "https://x.dev/a", "in order to", "delete", "was", "created", "alerts", "it's",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=14).map(" ".join))
def test_literal_spans_are_ordered_disjoint_and_lose_no_word(query: str) -> None:
    lex = default_lexicon()
    spans = lex.literals(query)
    assert all(0 <= s.start < s.end <= len(query) for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
    # every word of the query still reaches BM25: a literal's words are demoted, never dropped
    reg = ToolRegistry(HashEmbedder(8))
    terms = reg._query_terms(query)
    assert set(tokenize(query)) <= set(terms)
    assert all(w > 0 for w in terms.values())


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("post a message in the #general Slack channel", ["Slack"]),
        ("Upload this video to YouTube", ["YouTube"]),  # the first word opens the sentence
        ("were there outages in Iran? Show me", ["Iran"]),
        ("open https://Example.com in Chrome", ["Chrome"]),  # a URL is a literal
        ("create a table", []),
    ],
)
def test_proper_names_are_capitalised_words_that_do_not_open_a_sentence(query: str, names: list[str]) -> None:
    assert default_lexicon().proper_names(query) == names
