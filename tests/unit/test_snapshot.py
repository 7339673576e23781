"""Snapshot ids and manifests (indexops/index/snapshot.py): a content address of what the index holds."""

from __future__ import annotations

import pytest

from indexops.index.context import snapshot_id_for
from indexops.index.snapshot import current_snapshot_id, diff_snapshots, publish_snapshot, recompute_snapshot_id
from indexops.ingest.driver import ingest_path
from indexops.ingest.stages import apply_batch
from tests.conftest import write_jsonl
from tests.unit._helpers import assert_store_matches_ledger, rm, settings_for, ts, up

SMALL = {"chunking": {"strategy": "token_window", "max_tokens": 10, "overlap_tokens": 2, "include_title": True}}
DOCS = {
    "a": ("Apples", "apples grow on trees in orchards and are harvested in autumn by hand or machine"),
    "b": ("", "bananas are yellow"),
    "c": ("Cherries", "cherries are small round stone fruit, red or black, sweet or sour"),
    "d": ("", "bananas are yellow"),  # exact duplicate of b
}


def _sid(ctx):
    return current_snapshot_id(ctx.ledger, ctx.collection)


def _final_rows():
    return [{"id": k, "title": t, "text": x, "metadata": {"src": k}} for k, (t, x) in DOCS.items()]


def test_same_content_same_id_full_load_vs_many_deltas(make_ctx, tmp_path):
    full = make_ctx(settings_for(SMALL))
    write_jsonl(tmp_path / "snap" / "part-1.jsonl", _final_rows())
    one = ingest_path(full, tmp_path / "snap", "snapshot")

    deltas = make_ctx(settings_for(SMALL))
    feed = tmp_path / "feed"
    write_jsonl(feed / "b-001.jsonl", [{"id": "d", "text": "bananas are yellow", "metadata": {"src": "d"}}, {"id": "x", "text": "to be removed"}])
    write_jsonl(feed / "b-002.jsonl", [{"id": "a", "title": "Apples", "text": "an early draft about apples", "metadata": {"src": "a"}}])
    write_jsonl(feed / "b-003.jsonl", [{"id": "c", "title": "Cherries", "text": DOCS["c"][1], "metadata": {"src": "old"}}, {"id": "x", "op": "delete"}])
    write_jsonl(feed / "b-004.jsonl", [{"id": "b", "text": "bananas are yellow", "metadata": {"src": "b"}}, *_final_rows()[::-1]])
    many = ingest_path(deltas, feed, "delta")

    assert one["snapshot"]["snapshot_id"] == many["snapshot"]["snapshot_id"] == _sid(full) == _sid(deltas)
    assert _sid(deltas) == recompute_snapshot_id(deltas.ledger, deltas.collection)
    assert_store_matches_ledger(deltas)
    assert one["snapshot"]["chunks"] == many["snapshot"]["chunks"]


def test_running_sum_equals_full_recompute_through_changes(make_ctx):
    ctx = make_ctx(settings_for(SMALL))
    empty = _sid(ctx)
    assert empty == recompute_snapshot_id(ctx.ledger, ctx.collection)
    steps = [
        [up(k, x, title=t) for k, (t, x) in DOCS.items()],
        [up("a", DOCS["a"][1] + " and pressed into cider", title="Apples")],
        [up("c", DOCS["c"][1], title="Cherries", metadata={"m": 1})],
        [rm("b")],  # d is promoted
        [up("c", DOCS["c"][1], title="Cherries!", metadata={"m": 1})],
        [rm("a"), rm("c")],
    ]
    seen = {empty}
    for i, batch in enumerate(steps):
        apply_batch(ctx, batch, "f", f"r{i}")
        sid = _sid(ctx)
        assert sid == recompute_snapshot_id(ctx.ledger, ctx.collection), f"after step {i}"
        assert sid not in seen, f"step {i} changed content but not the id"
        seen.add(sid)
        assert_store_matches_ledger(ctx)
    # every document deleted: back to the empty-index id
    apply_batch(ctx, [rm("d")], "f", "last")
    assert ctx.store.count() == 0
    assert _sid(ctx) == empty


def test_empty_index_id_is_the_recipe_alone(make_ctx):
    a, b = make_ctx(), make_ctx()
    assert _sid(a) == _sid(b) == snapshot_id_for(0, 0, a.recipe)


def test_recipe_is_part_of_the_id(make_ctx):
    a = make_ctx(settings_for(SMALL))
    b = make_ctx(settings_for({"chunking": {**SMALL["chunking"], "max_tokens": 12}}))
    for ctx in (a, b):
        apply_batch(ctx, [up("b", "bananas are yellow")], "f", "r")  # one chunk either way
    assert a.collection != b.collection
    assert _sid(a) != _sid(b)


def test_store_backend_is_not_part_of_the_id(make_ctx):
    edge = make_ctx(settings_for(SMALL))
    mem = make_ctx(settings_for({**SMALL, "store": {"backend": "qdrant", "url": ":memory:"}}))
    for ctx in (edge, mem):
        apply_batch(ctx, [up(k, x, title=t) for k, (t, x) in DOCS.items()], "f", "r")
    assert _sid(edge) == _sid(mem)
    assert_store_matches_ledger(mem)


def test_publish_records_once_per_content_and_links_parents(make_ctx):
    ctx = make_ctx(settings_for(SMALL))
    apply_batch(ctx, [up("a", DOCS["a"][1]), up("b", "bananas are yellow"), up("d", "bananas are yellow")], "f", "r1")
    m1 = publish_snapshot(ctx, "r1")
    assert m1["new"] is True and m1["parent"] is None
    assert (m1["documents"], m1["duplicates"], m1["deleted"]) == (2, 1, 0)
    assert m1["chunks"] == ctx.store.count()
    assert m1["recipe"] == ctx.recipe and m1["collection"] == ctx.collection
    again = publish_snapshot(ctx, "r1b")
    assert again["new"] is False and again["snapshot_id"] == m1["snapshot_id"] and again["parent"] is None
    apply_batch(ctx, [rm("a")], "f", "r2")
    m2 = publish_snapshot(ctx, "r2")
    assert m2["new"] is True and m2["parent"] == m1["snapshot_id"]
    assert ctx.ledger.get_snapshot(m2["snapshot_id"][:10])["run_id"] == "r2"
    assert [s["snapshot_id"] for s in ctx.ledger.list_snapshots()] == [m1["snapshot_id"], m2["snapshot_id"]]


def test_diff_snapshots_added_changed_removed(make_ctx):
    ctx = make_ctx(settings_for(SMALL))
    apply_batch(ctx, [up("a", DOCS["a"][1]), up("b", "bananas are yellow"), up("c", DOCS["c"][1])], "f", "r1")
    s1 = publish_snapshot(ctx, "r1")["snapshot_id"]
    apply_batch(ctx, [up("a", DOCS["a"][1], metadata={"v": 2}), rm("b"), up("e", "elderberries are dark")], "f", "r2")
    s2 = publish_snapshot(ctx, "r2")["snapshot_id"]
    d = diff_snapshots(ctx.ledger, s1[:12], s2)
    assert (d["added"], d["changed"], d["removed"]) == (["e"], ["a"], ["b"])
    assert d["counts"] == {"added": 1, "changed": 1, "removed": 1}
    assert (d["from"], d["to"], d["recipe_changed"]) == (s1, s2, False)
    back = diff_snapshots(ctx.ledger, s2, s1)
    assert (back["added"], back["changed"], back["removed"]) == (["b"], ["a"], ["e"])
    same = diff_snapshots(ctx.ledger, s1, s1)
    assert same["counts"] == {"added": 0, "changed": 0, "removed": 0}


def test_diff_counts_a_promoted_duplicate_as_added(make_ctx):
    ctx = make_ctx(settings_for(SMALL))
    apply_batch(ctx, [up("b", "bananas are yellow"), up("d", "bananas are yellow")], "f", "r1")
    s1 = publish_snapshot(ctx, "r1")["snapshot_id"]
    apply_batch(ctx, [rm("b")], "f", "r2")
    s2 = publish_snapshot(ctx, "r2")["snapshot_id"]
    d = diff_snapshots(ctx.ledger, s1, s2)
    assert (d["added"], d["changed"], d["removed"]) == (["d"], [], ["b"])


def test_diff_unknown_snapshot_and_unknown_collection(make_ctx):
    ctx = make_ctx()
    s = publish_snapshot(ctx, "r")["snapshot_id"]
    with pytest.raises(LookupError, match="unknown snapshot 'nope'"):
        diff_snapshots(ctx.ledger, s, "nope")
    with pytest.raises(LookupError, match="no index state"):
        current_snapshot_id(ctx.ledger, "no-such-collection")
    with pytest.raises(LookupError, match="no index state"):
        recompute_snapshot_id(ctx.ledger, "no-such-collection")


def test_touching_updated_at_does_not_change_the_id(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("a", "text", updated_at=ts(1))], "f", "r1")
    sid = _sid(ctx)
    apply_batch(ctx, [up("a", "text", updated_at=ts(2))], "f", "r2")
    assert _sid(ctx) == sid
