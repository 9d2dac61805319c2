"""The replica-side merge of the upstream registry (router/upstreams/registry_state.py) and the
patch rule of concurrent updates (router/upstreams/admin_ops.py): properties, with hypothesis."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from router.upstreams.admin_ops import _strip_none
from router.upstreams.registry_state import RegistryState, Row

keys = st.tuples(st.sampled_from(["", "t1"]), st.sampled_from(["upstream", "override"]), st.sampled_from(["a", "b", "c"]))


@st.composite
def histories(draw: Any) -> list[Row]:
    """Row versions as a database would issue them: every write has its own, unique revision."""
    n = draw(st.integers(0, 25))
    revisions = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    rows = []
    for rev in revisions:
        owner, kind, name = draw(keys)
        deleted = draw(st.booleans())
        body = {} if deleted else {"timeout": draw(st.integers(1, 9)), "rev": rev}
        rows.append(Row(owner, kind, name, rev, deleted, body))
    return rows


def _state(rows: list[Row]) -> RegistryState:
    s = RegistryState()
    s.merge(rows)
    return s


@given(histories(), st.randoms())
def test_any_delivery_order_converges_to_the_latest_revision(rows: list[Row], rnd: Any) -> None:
    # Two replicas read the rows in different orders, in overlapping batches, with duplicates
    # (a notification's reload and a poll's reload racing): same state, the newest row per key.
    a, b = RegistryState(), RegistryState()
    order_a, order_b = rows[:], rows + rows[: len(rows) // 2]
    rnd.shuffle(order_a)
    rnd.shuffle(order_b)
    for i in range(0, len(order_a), 3):
        a.merge(order_a[i : i + 3])
    for row in order_b:
        b.merge([row])
    assert a.view() == b.view()
    newest: dict[Any, Row] = {}
    for r in rows:
        if r.key not in newest or r.revision > newest[r.key].revision:
            newest[r.key] = r
    assert a.view() == {k: (r.revision, r.deleted, r.body) for k, r in newest.items()}
    assert a.fingerprint() == b.fingerprint()


@given(histories(), histories(), histories())
def test_merge_is_a_join(x: list[Row], y: list[Row], z: list[Row]) -> None:
    # Commutative, associative, idempotent on whole snapshots (revisions made unique across them).
    y = [Row(r.owner, r.kind, r.name, r.revision + 20_000, r.deleted, r.body) for r in y]
    z = [Row(r.owner, r.kind, r.name, r.revision + 40_000, r.deleted, r.body) for r in z]
    assert _state(x + y).view() == _state(y + x).view()
    left = _state(x)
    left.merge(_state(y + z).rows.values())
    right = _state(x + y)
    right.merge(z)
    assert left.view() == right.view()
    twice = _state(x)
    assert not twice.merge(x)  # nothing changes the second time
    assert twice.view() == _state(x).view()


fields = st.dictionaries(st.sampled_from(["timeout", "enabled", "tags", "url", "pool_size"]),
                         st.one_of(st.none(), st.integers(0, 5), st.booleans()), max_size=4)


@given(st.dictionaries(st.sampled_from(["timeout", "enabled", "url"]), st.integers(0, 5)), fields, fields)
def test_concurrent_patches_keep_both_sides_fields(base: dict[str, Any], p: dict[str, Any], q: dict[str, Any]) -> None:
    # Two admins patch one definition at once; the database applies them one after the other,
    # in either order. Fields only one of them touched end the same both ways; a field both
    # touched ends with the value of the one applied last — the same on every replica, since
    # every replica reads that one row.
    pq = _strip_none(q, _strip_none(p, base))
    qp = _strip_none(p, _strip_none(q, base))
    for key in set(base) | set(p) | set(q):
        if key in p and key in q:
            assert pq.get(key) == (q[key] if q[key] is not None else None) or key not in pq
            assert qp.get(key) == (p[key] if p[key] is not None else None) or key not in qp
        else:
            assert pq.get(key) == qp.get(key)
