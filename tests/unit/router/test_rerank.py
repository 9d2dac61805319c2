"""The rerank stage's pure parts (router/rerank.py): the prompt, reading the model's answer, the
reorder. The routed call itself is tested in tests/integration/registry/test_rerank.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from router.registry.index import SearchHit, ToolRecord
from router.rerank import LINE_CHARS, messages, parse_ranking, reorder

NAME = st.from_regex(r"[a-z][a-z0-9]{0,6}__[a-z][a-z0-9_]{0,8}", fullmatch=True)


def hit(name: str, description: str = "Does a thing.", score: float = 0.5) -> SearchHit:
    server, tool = name.split("__", 1)
    return SearchHit(ToolRecord(server, tool, name, description=description), score)


@given(st.lists(NAME, min_size=1, max_size=12, unique=True), st.text(max_size=300))
def test_any_answer_gives_candidates_only_each_once(names: list[str], answer: str) -> None:
    ranked = parse_ranking(answer, names)
    assert ranked is None or (set(ranked) <= set(names) and len(ranked) == len(set(ranked)))


@given(st.lists(NAME, min_size=1, max_size=12, unique=True), st.data())
def test_reorder_is_a_permutation_led_by_the_named_tools(names: list[str], data: st.DataObject) -> None:
    hits = [hit(n) for n in names]
    ranked = data.draw(st.lists(st.sampled_from(names), unique=True))
    out = [h.record.public_name for h in reorder(hits, ranked)]
    assert sorted(out) == sorted(names) and out[: len(ranked)] == ranked
    rest = [n for n in names if n not in ranked]
    assert out[len(ranked) :] == rest  # the others keep their first-stage order


def test_answers_in_the_shapes_models_give() -> None:
    names = ["a__read_file", "a__write_file", "b__read_file", "c__send_mail"]
    assert parse_ranking("c__send_mail\na__write_file", names) == ["c__send_mail", "a__write_file"]
    assert parse_ranking("1. `a__write_file` — best\n2) **x__nope**\n3. a__write_file", names) == ["a__write_file"]
    assert parse_ranking("send_mail", names) == ["c__send_mail"]  # unique bare name
    assert parse_ranking("read_file", names) is None  # ambiguous bare name: two servers have it
    assert parse_ranking("NONE", names) == [] and parse_ranking(" none.\n", names) == []
    assert parse_ranking("I'd say none of them fit", names) is None  # prose is not the format
    assert parse_ranking("", names) is None


def test_the_prompt_is_a_pure_function_of_query_and_candidates() -> None:
    long = "Reads a file. " + "x" * 400
    hits = [hit("a__read_file", long), hit("b__stat", "Stat\n a   path."), hit("c__blank", "")]
    one = messages("read  the file\n", hits)
    assert one == messages("read the file", hits)  # whitespace in the query does not change the key
    user = one[-1]["content"]
    lines = [line for line in user.splitlines() if line.startswith("- ")]
    assert lines[1] == "- b__stat: Stat a path." and lines[2] == "- c__blank"
    assert lines[0].endswith("…") and len(lines[0]) <= len("- a__read_file: ") + LINE_CHARS
    assert messages("read the file", hits[::-1]) != one  # the candidates' order is part of it
