"""ToolRegistry: catalog changes, filters, grants, fusion, persisted embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mcp.types as mt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.registry.embedding_store import DiskEmbeddingStore
from router.registry.index import ToolRecord, ToolRegistry, record_from_tool
from vsm_mcp.embeddings import HashEmbedder
from vsm_mcp.errors import InvalidArguments


class CountingEmbedder:
    """A real (hash) embedder that counts the texts it embeds."""

    def __init__(self) -> None:
        self.inner = HashEmbedder(64)
        self.name = self.inner.name
        self.dim = self.inner.dim
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts)


def rec(server: str, name: str, description: str, tags: tuple[str, ...] = (), **props: str) -> ToolRecord:
    schema = {"type": "object", "properties": {k: {"type": "string", "description": v} for k, v in props.items()}}
    return ToolRecord(server, name, f"{server}__{name}", description=description, input_schema=schema, tags=tags)


FS = [
    rec("fs", "read_file", "Read the complete contents of a file.", path="Path of the file"),
    rec("fs", "write_file", "Create or overwrite a file with new content.", path="Path", content="Text"),
    rec("fs", "list_directory", "List the files in a directory.", path="Directory path"),
]
GIT = [
    rec("git", "git_commit", "Record staged changes in the repository.", ("storage:write",), message="Commit message"),
    rec("git", "git_log", "Show the commit history of the repository.", ("storage:read",)),
]


@pytest.fixture
def registry() -> ToolRegistry:
    reg = ToolRegistry(HashEmbedder(64))
    reg.replace_server("fs", FS)
    reg.replace_server("git", GIT)
    return reg


def names(hits: Sequence[object]) -> list[str]:
    return [h.record.public_name for h in hits]  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "embedding"])
def test_finds_the_obvious_tool_in_every_mode(registry: ToolRegistry, mode: str) -> None:
    assert names(registry.search("show the commit history", limit=1, mode=mode))[0] == "git__git_log"  # type: ignore[arg-type]
    assert names(registry.search("read a file", limit=1, mode=mode))[0] == "fs__read_file"  # type: ignore[arg-type]


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
def test_both_fusions_rank_and_score_descending(registry: ToolRegistry, fusion: str) -> None:
    hits = registry.search("commit message to the repository", limit=5, fusion=fusion)  # type: ignore[arg-type]
    assert names(hits)[0] == "git__git_commit"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_replace_and_remove_server(registry: ToolRegistry) -> None:
    registry.replace_server("fs", [*FS[:2], rec("fs", "tail_file", "Show the last lines of a log file.")])
    assert "fs__tail_file" in names(registry.search("last lines of a log", limit=3))
    assert "fs__list_directory" not in {r.public_name for r in registry.records()}
    registry.remove_server("git")
    assert all(r.server == "fs" for r in registry.records())
    assert registry.get("git__git_log") is None


def test_filters_server_tags_and_availability(registry: ToolRegistry) -> None:
    assert {h.record.server for h in registry.search("file commit history", limit=10, server="git")} == {"git"}
    assert names(registry.search("repository", limit=10, tags=["storage:read"])) == ["git__git_log"]
    assert set(names(registry.search("repository", limit=10, tags=["storage"]))) == {"git__git_log", "git__git_commit"}
    registry.set_available("git", False)
    assert not {h.record.server for h in registry.search("commit history repository", limit=10)} & {"git"}
    registry.set_available("git", True)
    assert "git__git_log" in names(registry.search("commit history", limit=2))
    assert registry.search("anything", server="nope") == []


@settings(max_examples=60, deadline=None)
@given(
    denied=st.sets(st.sampled_from([r.public_name for r in FS + GIT])),
    query=st.sampled_from(["read a file", "commit history", "write content", "directory listing", "zzz"]),
    limit=st.integers(1, 6),
)
def test_a_denied_tool_is_never_returned(denied: set[str], query: str, limit: int) -> None:
    reg = ToolRegistry(HashEmbedder(64))
    reg.replace_server("fs", FS)
    reg.replace_server("git", GIT)
    allowed_hits = reg.search(query, limit=limit, allowed=lambda r: r.public_name not in denied)
    assert not set(names(allowed_hits)) & denied
    # Grants filter, they do not reorder: the result is the unfiltered ranking minus denied tools.
    full = [n for n in names(reg.search(query, limit=10)) if n not in denied]
    assert names(allowed_hits) == full[:limit]


def test_bad_input_is_named(registry: ToolRegistry) -> None:
    with pytest.raises(InvalidArguments, match="query"):
        registry.search("  ")
    with pytest.raises(InvalidArguments, match="limit"):
        registry.search("x", limit=0)
    with pytest.raises(InvalidArguments, match="mode"):
        registry.search("x", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(InvalidArguments, match="belongs to"):
        registry.replace_server("git", FS)


def test_restart_does_not_re_embed_unchanged_tools(tmp_path: Path) -> None:
    first = CountingEmbedder()
    reg = ToolRegistry(first, store=DiskEmbeddingStore(tmp_path / "emb", first.dim))
    reg.replace_server("fs", FS)
    reg.replace_server("git", GIT)
    assert first.texts == len(FS) + len(GIT)

    # A new process: a fresh registry and embedder over the same store.
    second = CountingEmbedder()
    reg2 = ToolRegistry(second, store=DiskEmbeddingStore(tmp_path / "emb", second.dim))
    reg2.replace_server("fs", FS)
    reg2.replace_server("git", GIT)
    assert second.texts == 0
    assert names(reg2.search("commit history", limit=1)) == names(reg.search("commit history", limit=1))

    before = second.texts  # the search above embedded its query
    changed = [FS[0], FS[1], rec("fs", "list_directory", "Enumerate entries of a folder.", path="Directory path")]
    reg2.replace_server("fs", changed)
    assert second.texts - before == 1  # only the tool whose text changed
    reg2.set_available("fs", False)
    assert second.texts - before == 1


def test_query_embeddings_are_cached(registry: ToolRegistry) -> None:
    emb = CountingEmbedder()
    reg = ToolRegistry(emb, query_cache_size=2)
    reg.replace_server("fs", FS)
    base = emb.texts
    for q in ["a", "a", "b", "a", "c", "a"]:
        reg.search(q, mode="embedding")
    assert emb.texts - base == 3  # a, b, c once each; the LRU keeps "a" as it is reused


def test_a_query_is_embedded_with_the_types_of_what_it_names(registry: ToolRegistry) -> None:
    seen: list[str] = []
    inner = HashEmbedder(64)

    class Recording:
        name, dim = inner.name, inner.dim

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            seen.extend(texts)
            return inner.embed(texts)

    reg = ToolRegistry(Recording())
    reg.replace_server("fs", FS)
    seen.clear()
    reg.search("what's inside main.go", mode="embedding")
    reg.search("block deletes at night", mode="embedding")
    reg.search("read a file", mode="embedding")
    assert seen[0] == "what's inside a file"  # the thing replaced by its type
    assert seen[1].startswith("block deletes at night (") and seen[2] == "read a file"
    # the cache is keyed on the query as asked, so asking again embeds nothing
    reg.search("what's inside main.go", mode="embedding")
    assert len(seen) == 3


def test_record_from_tool_accepts_mcp_tools_and_json() -> None:
    tool = mt.Tool(
        name="getThing",
        description="Gets a thing.",
        input_schema={"type": "object", "properties": {"id": {"type": "string"}}},
        annotations=mt.ToolAnnotations(title="Get thing", read_only_hint=True),
    )
    a = record_from_tool("s", tool, "s__getThing", tags=("storage:read",))
    b = record_from_tool("s", tool.model_dump(by_alias=True, exclude_none=True), "s__getThing", tags=("storage:read",))
    assert a == b
    assert a.title == "Get thing" and a.schema_hash and a.annotations["readOnlyHint"] is True
    with pytest.raises(InvalidArguments, match="no name"):
        record_from_tool("s", {"description": "x"}, "s__x")
    with pytest.raises(InvalidArguments, match="input schema"):
        record_from_tool("s", {"name": "x", "inputSchema": "nope"}, "s__x")


def test_hidden_set_shapes_same_names_empty_and_huge_descriptions() -> None:
    # Shapes an unseen catalog will have: one tool name on two servers, a tool without any
    # description, one with a description of thousands of words.
    reg = ToolRegistry(HashEmbedder(64))
    reg.replace_server("fs-go", [rec("fs-go", "read_file", "Read a file."), rec("fs-go", "get_time", "")])
    reg.replace_server("desktop-commander", [rec("desktop-commander", "read_file", "Read a file. " + "word " * 5000)])
    dc, fs = reg.get("desktop-commander__read_file"), reg.get("fs-go__read_file")
    assert dc is not None and fs is not None and dc.embedding_text != fs.embedding_text
    assert names(reg.search("read a file with desktop commander", limit=1)) == ["desktop-commander__read_file"]
    assert names(reg.search("read a file on fs-go", limit=1)) == ["fs-go__read_file"]
    assert names(reg.search("get time", limit=1)) == ["fs-go__get_time"]
    assert set(names(reg.search("read file", limit=2))) == {"fs-go__read_file", "desktop-commander__read_file"}


def test_query_gives_probabilities_and_an_honest_no_match(registry: ToolRegistry) -> None:
    found = registry.query("show the commit history of the repository", limit=5)
    assert names(found.hits)[0] == "git__git_log" and not found.no_match
    scores = [h.score for h in found.hits]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert found.none_probability is not None and sum(scores) + found.none_probability <= 1.0 + 1e-9
    pizza = registry.query("order a pepperoni pizza for delivery tonight", limit=3)
    assert pizza.no_match and len(pizza.hits) == 3  # the nearest tools are still listed
    assert pizza.hits[0].score < found.hits[0].score


def test_without_a_ranker_the_fused_scores_rank_and_nothing_is_no_match(registry: ToolRegistry) -> None:
    plain = ToolRegistry(HashEmbedder(64), ranker=None)
    plain.replace_servers({"fs": FS, "git": GIT})
    found = plain.query("order a pepperoni pizza", limit=2)
    assert not found.no_match and found.none_probability is None and found.hits[0].score <= 1.0
    assert plain.query("x", server="nope").no_match  # nothing eligible


def test_the_ranker_reorders_only_its_pool_and_past_it_scores_zero() -> None:
    many = [rec("big", f"tool_{i}", f"Does thing number {i} with widgets.") for i in range(60)]
    reg = ToolRegistry(HashEmbedder(64))
    reg.replace_server("big", many)
    hits = reg.search("widgets thing", limit=50)
    assert len(hits) == 50 and all(h.score == 0.0 for h in hits[32:])
    first_stage, _ = reg.candidates("widgets thing", limit=50)
    assert {h.record.name for h in hits[:32]} == {h.record.name for h in first_stage[:32]}
    assert [h.record.name for h in hits[32:]] == [h.record.name for h in first_stage[32:50]]


def test_the_upstream_description_is_evidence(tmp_path: Path) -> None:
    tool = {"name": "complete", "description": "Chat completion.", "inputSchema": {"type": "object"}}
    plain = record_from_tool("gw", tool, "gw__complete")
    about = "LLM gateway: cached completions. " + "More text about its configuration and limits. " * 5
    told = record_from_tool("gw", tool, "gw__complete", server_text=about)
    assert "LLM gateway" in told.embedding_text and told.embedding_text.count("More text") < 5  # first sentences only
    assert told.embedding_text != plain.embedding_text
    reg = ToolRegistry(HashEmbedder(64))
    reg.replace_server("gw", [told])
    assert reg._snapshot.bm25.scores({"gateway": 1.0})[0] > 0  # the upstream field is indexed


def test_the_ranker_sees_whether_a_name_says_the_query_s_words_in_the_same_number() -> None:
    reg = ToolRegistry(HashEmbedder(64))
    reg.replace_server("sec", [
        rec("sec", "get_alerts", "Alerts of a repository."),
        rec("sec", "get_alert_details", "One alert of a repository."),
        rec("sec", "get_repo", "A repository."),
    ])
    for query, expect in (
        ("list the alerts", {"get_alerts": 1.0, "get_alert_details": -1.0, "get_repo": 0.0}),
        ("show one alert", {"get_alerts": -1.0, "get_alert_details": 1.0, "get_repo": 0.0}),
    ):
        hits, ev = reg.candidates(query, limit=3)
        assert ev is not None and ev.number is not None
        assert {h.record.name: float(n) for h, n in zip(hits, ev.number, strict=True)} == expect
    # a quoted or named thing's words say nothing about number ("a file called alerts")
    hits, ev = reg.candidates("a file called alerts", limit=3)
    assert ev is not None and ev.number is not None and not ev.number.any()


def test_a_name_the_catalog_never_uses_is_evidence_for_no_tool(registry: ToolRegistry) -> None:
    def unknown(query: str) -> float:
        _, ev = registry.candidates(query, limit=3)
        assert ev is not None
        return ev.unknown_name

    assert unknown("post the file to Slack") == 1.0
    assert unknown("read the File from disk") == 0.0  # the catalog says "file"
    assert unknown("show the Git log") == 0.0  # a server's name is the catalog's word
    assert unknown("read a file") == 0.0


def test_a_query_longer_than_search_takes_is_refused_with_its_length(registry: ToolRegistry) -> None:
    from router.registry.index import MAX_QUERY_CHARS

    with pytest.raises(InvalidArguments, match=r"query is 5,000 characters; tool search takes at most 4,096"):
        registry.search("x" * 5000)
    with pytest.raises(InvalidArguments, match="at most"):
        registry.embed_query("x" * (MAX_QUERY_CHARS + 1))
    assert registry.search("y" * MAX_QUERY_CHARS, mode="bm25") == []
