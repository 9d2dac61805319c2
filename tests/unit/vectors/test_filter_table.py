"""MetaTable.allowed must agree with the reference semantics Filter.matches under any sequence of
upserts and removes (property test), and survive a save/load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_mcp.vectors.filter import Filter, MetaTable

tenants = st.sampled_from(["a", "b", "c"])
tags = st.lists(st.sampled_from(["x", "y", "z"]), unique=True, max_size=3)
metas = st.one_of(st.none(), st.fixed_dictionaries({"tenant": tenants, "collection": st.sampled_from(["p", "q"]),
                                                     "tags": tags}))
ops = st.lists(st.tuples(st.booleans(), st.integers(0, 30), metas), max_size=60)
filters = st.builds(
    Filter, tenant=st.one_of(st.none(), tenants, st.just("nobody")), collection=st.one_of(st.none(), st.just("p")),
    tags_all=tags.map(tuple), tags_any=tags.map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(ops, filters)
def test_allowed_matches_reference(ops: list[tuple[bool, int, dict[str, Any] | None]], flt: Filter) -> None:
    table = MetaTable()
    model: dict[int, dict[str, Any] | None] = {}
    for is_upsert, item, meta in ops:
        if is_upsert:
            table.upsert(np.array([item]), None if meta is None else [meta])
            model[item] = meta
        else:
            table.remove(np.array([item]))
            model.pop(item, None)
    assert len(table) == len(model)
    allowed = table.allowed(flt)
    if flt.is_empty:
        assert allowed is None
        return
    assert allowed is not None
    assert sorted(allowed.tolist()) == sorted(i for i, m in model.items() if flt.matches(m))


def test_save_and_load_keep_filters(tmp_path: Path) -> None:
    table = MetaTable()
    table.upsert(np.arange(4), [{"tenant": "a", "tags": ["x"]}, {"tenant": "b"}, {"tenant": "a"}, {"tags": ["x"]}])
    table.remove(np.array([2]))
    table.save(tmp_path)
    loaded = MetaTable.load(tmp_path)
    for flt in (Filter(tenant="a"), Filter(tags_all=("x",)), Filter(tenant="b", tags_any=("x",))):
        assert sorted(loaded.allowed(flt).tolist()) == sorted(table.allowed(flt).tolist())  # type: ignore[union-attr]
    assert len(loaded) == 3 and loaded.get(0) == {"tenant": "a", "collection": None, "tags": ["x"]}
