"""The ingestion core end to end without Prefect: ingest_path over delta feeds and apply_batch."""

from __future__ import annotations

import json

import pytest

from indexops.index.snapshot import current_snapshot_id
from indexops.ingest.driver import IngestFailed, ingest_path
from indexops.ingest.units import PendingWork, pending_work, plan_source
from indexops.ingest.plan import plan_batch
from indexops.ingest.stages import apply_batch, chunk_batch, embed_chunks, write_store
from tests.conftest import write_jsonl
from tests.unit._helpers import (
    assert_store_matches_ledger,
    doc_ids_in_store,
    ledger_points,
    rm,
    settings_for,
    statuses,
    store_points,
    ts,
    up,
)

SMALL = {"chunking": {"strategy": "recursive", "max_tokens": 9, "overlap_tokens": 0, "include_title": False}}
# three 4-token sentences in a 9-token window: chunks [s1 s2] and [s3]
P3 = "alpha beta gamma delta. epsilon zeta eta theta. iota kappa lambda mu."


def _sid(ctx):
    return current_snapshot_id(ctx.ledger, ctx.collection)


def _top_doc(ctx, text):
    hits = ctx.store.search_dense(ctx.embedder.embed([text])[0], 1)
    return hits[0].payload["doc_id"] if hits else None


def _texts(ctx, ids):
    return {d: r.text for d, r in ctx.ledger.get_documents(ids).items()}


# ---- delta feeds: each file exactly once, in name order ------------------------------------------


def test_first_run_indexes_feed_and_store_agrees_with_ledger(make_ctx, tmp_path):
    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", [{"id": "a", "title": "A", "text": "apples are red fruit"}, {"id": "b", "text": "bananas are yellow"}])
    write_jsonl(feed / "b-002.jsonl", [{"id": "c", "text": "cherries are small", "metadata": {"lang": "en"}}, {"id": "a", "op": "delete"}])
    ctx = make_ctx()
    out = ingest_path(ctx, feed, "delta")
    c = out["counts"]
    assert (c["received"], c["upserted"], c["deleted"], c["chunks_embedded"], c["chunks_deleted"]) == (4, 3, 1, 3, 1)
    assert out["feed"] == "news" and out["changed_after_apply"] == []
    assert doc_ids_in_store(ctx) == {"b", "c"}
    assert_store_matches_ledger(ctx)
    assert ctx.ledger.cursor("news")["last_file"] == "b-002.jsonl"
    assert out["snapshot"]["snapshot_id"] == _sid(ctx) and out["snapshot"]["new"] is True
    assert (out["snapshot"]["documents"], out["snapshot"]["deleted"], out["snapshot"]["chunks"]) == (2, 1, 2)
    assert _top_doc(ctx, "cherries are small") == "c"
    (cp,) = [v for v in store_points(ctx).values() if v["doc_id"] == "c"]
    assert cp["metadata"] == {"lang": "en"} and cp["text"] == "cherries are small"


def test_rerun_applies_nothing(make_ctx, tmp_path):
    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", [{"id": "a", "text": "apples are red"}])
    ctx = make_ctx()
    first = ingest_path(ctx, feed, "delta")
    again = ingest_path(ctx, feed, "delta")
    assert again["counts"]["received"] == 0 and again["counts"]["chunks_embedded"] == 0
    assert again["snapshot"]["snapshot_id"] == first["snapshot"]["snapshot_id"] and again["snapshot"]["new"] is False
    assert len(ctx.ledger.list_snapshots()) == 1
    assert_store_matches_ledger(ctx)


def test_pending_work_counts_waiting_files_from_the_ledger_alone(make_ctx, tmp_path):
    """What lets a run with nothing to do skip queueing: applied files are not pending, a new one is,
    with its size; snapshot sources and missing feeds are 'unknown', never 'nothing'."""
    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", [{"id": "a", "text": "apples are red"}])
    ctx = make_ctx()
    url = ctx.settings.ledger.url
    first = pending_work(ctx.workspace, url, feed, "delta")
    assert first is not None and first.files == 1 and first.bytes == (feed / "b-001.jsonl").stat().st_size
    ingest_path(ctx, feed, "delta")
    assert pending_work(ctx.workspace, url, feed, "delta") == PendingWork(0, 0)
    write_jsonl(feed / "b-002.jsonl", [{"id": "b", "text": "bananas are yellow"}])
    assert pending_work(ctx.workspace, url, feed, "delta") == PendingWork(1, (feed / "b-002.jsonl").stat().st_size)
    assert pending_work(ctx.workspace, url, feed, "delta", feed="another-feed").files == 2  # the ledger is per feed
    assert pending_work(ctx.workspace, url, feed, "snapshot") is None
    assert pending_work(ctx.workspace, url, tmp_path / "missing", "delta") is None


def test_files_apply_in_name_order_not_write_order(make_ctx, tmp_path):
    feed = tmp_path / "news"
    write_jsonl(feed / "b-002.jsonl", [{"id": "x", "text": "the second version"}])  # written first
    write_jsonl(feed / "b-001.jsonl", [{"id": "x", "text": "the first version"}])
    ctx = make_ctx()
    ingest_path(ctx, feed, "delta")
    assert _texts(ctx, ["x"]) == {"x": "the second version"}
    assert ctx.ledger.cursor("news")["last_file"] == "b-002.jsonl"


def test_new_files_apply_once_on_later_runs(make_ctx, tmp_path):
    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", [{"id": "x", "text": "version one"}])
    ctx = make_ctx()
    ingest_path(ctx, feed, "delta")
    write_jsonl(feed / "b-002.jsonl", [{"id": "y", "text": "another doc"}])
    out = ingest_path(ctx, feed, "delta")
    assert out["counts"]["received"] == 1 and out["counts"]["upserted"] == 1
    assert set(ctx.ledger.applied_files("news")) == {"b-001.jsonl", "b-002.jsonl"}


def test_changed_after_apply_is_reported_and_not_reapplied(make_ctx, tmp_path):
    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", [{"id": "x", "text": "original text"}])
    ctx = make_ctx()
    ingest_path(ctx, feed, "delta")
    sid = _sid(ctx)
    write_jsonl(feed / "b-001.jsonl", [{"id": "x", "text": "rewritten after apply"}])
    out = ingest_path(ctx, feed, "delta")
    assert out["changed_after_apply"] == ["b-001.jsonl"]
    assert out["counts"]["received"] == 0
    assert _texts(ctx, ["x"]) == {"x": "original text"} and _sid(ctx) == sid


def test_a_rerun_reads_no_applied_file_whose_size_and_mtime_are_unchanged(make_ctx, tmp_path, monkeypatch):
    """The scan trusts an applied file's recorded hash while its size and mtime are the ones the hash
    was taken from (a no-op costs O(new files), not O(feed history)); any other stat is hashed again."""
    import os

    import indexops.ingest.sources as sources

    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", [{"id": "x", "text": "original text"}])
    write_jsonl(feed / "b-002.jsonl", [{"id": "y", "text": "second file"}])
    ctx = make_ctx()
    ingest_path(ctx, feed, "delta")
    rec = ctx.ledger.applied_file_records("news")["b-001.jsonl"]
    st = (feed / "b-001.jsonl").stat()
    assert (rec.size, rec.mtime_ns, rec.records) == (st.st_size, st.st_mtime_ns, 1)
    hashed = []
    real = sources.file_sha256
    monkeypatch.setattr(sources, "file_sha256", lambda p: (hashed.append(os.path.basename(p)), real(p))[1])
    out = ingest_path(ctx, feed, "delta")
    assert hashed == [] and out["counts"]["received"] == 0 and out["changed_after_apply"] == []
    os.utime(feed / "b-002.jsonl", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    write_jsonl(feed / "b-001.jsonl", [{"id": "x", "text": "REWRITTEN text"}])  # same size, new bytes
    os.utime(feed / "b-001.jsonl", ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    out = ingest_path(ctx, feed, "delta")
    assert sorted(hashed) == ["b-001.jsonl", "b-002.jsonl"]
    assert out["changed_after_apply"] == ["b-001.jsonl"] and out["counts"]["received"] == 0
    assert _texts(ctx, ["x"]) == {"x": "original text"}
    hashed.clear()  # the touched file still hashed to its record: its new stat was kept; the rewritten one was not
    out = ingest_path(ctx, feed, "delta")
    assert hashed == ["b-001.jsonl"] and out["changed_after_apply"] == ["b-001.jsonl"]


def test_files_applied_before_stats_were_kept_are_hashed_once_then_trusted(make_ctx, tmp_path, monkeypatch):
    import os

    from sqlalchemy import update

    import indexops.ingest.sources as sources
    from indexops.ledger import applied_files

    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", [{"id": "x", "text": "original text"}])
    ctx = make_ctx()
    ingest_path(ctx, feed, "delta")
    with ctx.ledger.engine.begin() as c:  # as an older ledger left it
        c.execute(update(applied_files).values(file_size=None, file_mtime_ns=None))
    hashed = []
    real = sources.file_sha256
    monkeypatch.setattr(sources, "file_sha256", lambda p: (hashed.append(os.path.basename(p)), real(p))[1])
    ingest_path(ctx, feed, "delta")
    ingest_path(ctx, feed, "delta")
    assert hashed == ["b-001.jsonl"]
    assert ctx.ledger.applied_file_records("news")["b-001.jsonl"].size == (feed / "b-001.jsonl").stat().st_size


def test_late_file_before_cursor_is_still_applied_once(make_ctx, tmp_path):
    feed = tmp_path / "news"
    write_jsonl(feed / "b-002.jsonl", [{"id": "y", "text": "second file"}])
    ctx = make_ctx()
    ingest_path(ctx, feed, "delta")
    write_jsonl(feed / "b-001.jsonl", [{"id": "z", "text": "arrived late"}])
    sp = plan_source(ctx, feed, "delta")
    assert sp.late_files == ["b-001.jsonl"] and sp.pending_files == 1
    ingest_path(ctx, feed, "delta")
    assert statuses(ctx, ["z"]) == {"z": ("active", None)}
    assert ctx.ledger.cursor("news")["last_file"] == "b-001.jsonl"
    assert ingest_path(ctx, feed, "delta")["counts"]["received"] == 0


def test_missing_feed_directory(make_ctx, tmp_path):
    with pytest.raises(IngestFailed, match="failed in task scan_source.*feed directory not found") as e:
        ingest_path(make_ctx(), tmp_path / "nope", "delta")
    assert isinstance(e.value.__cause__, FileNotFoundError)


# ---- record rules: stale, last wins, deletes ------------------------------------------------------


def test_older_upsert_is_stale(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("x", "newer text", updated_at=ts(5))], "f", "r1")
    c = apply_batch(ctx, [up("x", "older text", updated_at=ts(3))], "f", "r2")
    assert (c.stale, c.upserted, c.chunks_embedded) == (1, 0, 0)
    assert _texts(ctx, ["x"]) == {"x": "newer text"}
    c = apply_batch(ctx, [up("x", "same instant", updated_at=ts(5))], "f", "r3")  # not older: applied
    assert (c.stale, c.upserted) == (0, 1)


def test_staleness_compares_instants_across_utc_offsets(make_ctx):
    from datetime import datetime, timedelta, timezone

    plus2 = timezone(timedelta(hours=2))
    ctx = make_ctx()
    apply_batch(ctx, [up("x", "at 03:00Z", updated_at=datetime(2024, 1, 2, 5, 0, tzinfo=plus2))], "f", "r1")
    c = apply_batch(ctx, [up("x", "at 04:00Z", updated_at=datetime(2024, 1, 2, 4, 0, tzinfo=timezone.utc))], "f", "r2")
    assert (c.stale, c.upserted) == (0, 1)
    assert _texts(ctx, ["x"]) == {"x": "at 04:00Z"}


def test_older_delete_is_stale(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("x", "kept text", updated_at=ts(5))], "f", "r1")
    c = apply_batch(ctx, [rm("x", updated_at=ts(4))], "f", "r2")
    assert (c.stale, c.deleted) == (1, 0)
    assert doc_ids_in_store(ctx) == {"x"}


def test_upsert_older_than_a_delete_is_stale(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("x", "text", updated_at=ts(2))], "f", "r1")
    apply_batch(ctx, [rm("x", updated_at=ts(5))], "f", "r2")
    c = apply_batch(ctx, [up("x", "resurrected?", updated_at=ts(4))], "f", "r3")
    assert c.stale == 1 and doc_ids_in_store(ctx) == set()


def test_last_record_of_an_id_wins_inside_a_batch(make_ctx):
    ctx = make_ctx()
    c = apply_batch(ctx, [up("x", "first"), up("y", "why"), up("x", "second"), up("x", "third")], "f", "r1")
    assert (c.received, c.upserted) == (4, 2)
    assert _texts(ctx, ["x"]) == {"x": "third"}
    # last wins even when it is older than an earlier record of the same batch
    apply_batch(ctx, [up("z", "new", updated_at=ts(9)), up("z", "old", updated_at=ts(1))], "f", "r2")
    assert _texts(ctx, ["z"]) == {"z": "old"}
    c = apply_batch(ctx, [up("y", "changed"), rm("y")], "f", "r3")
    assert c.deleted == 1 and statuses(ctx, ["y"]) == {"y": ("deleted", None)}
    c = apply_batch(ctx, [rm("w"), up("w", "w lives")], "f", "r4")
    assert (c.upserted, c.delete_unknown) == (1, 0)
    assert_store_matches_ledger(ctx)


def test_delete_removes_points_and_unknown_delete_is_counted(make_ctx):
    ctx = make_ctx(settings_for(SMALL))
    apply_batch(ctx, [up("p", P3), up("q", "other words entirely here")], "f", "r1")
    assert {v["doc_id"] for v in store_points(ctx).values()} == {"p", "q"} and ctx.store.count() == 3
    c = apply_batch(ctx, [rm("p"), rm("nobody")], "f", "r2")
    assert (c.deleted, c.delete_unknown, c.chunks_deleted) == (1, 1, 2)
    assert doc_ids_in_store(ctx) == {"q"}
    c = apply_batch(ctx, [rm("p")], "f", "r3")  # deleting twice is a no-op
    assert (c.deleted, c.delete_unknown) == (0, 1)
    c = apply_batch(ctx, [up("p", P3)], "f", "r4")  # and it can come back
    assert c.upserted == 1 and c.chunks_embedded == 2
    assert_store_matches_ledger(ctx)


# ---- only new or changed chunks are embedded --------------------------------------------------------


def test_noop_rerun_embeds_nothing(make_ctx):
    ctx = make_ctx(settings_for(SMALL))
    batch = [up("p", P3), up("q", "other words entirely here")]
    assert apply_batch(ctx, batch, "f", "r1").chunks_embedded == 3
    sid = _sid(ctx)
    c = apply_batch(ctx, batch, "f", "r2")
    assert (c.unchanged, c.upserted, c.chunks_embedded, c.chunks_deleted) == (2, 0, 0, 0)
    assert _sid(ctx) == sid


def test_changing_one_sentence_embeds_only_its_chunk(make_ctx):
    ctx = make_ctx(settings_for(SMALL))
    apply_batch(ctx, [up("p", P3), up("q", "other words entirely here")], "f", "r1")
    before = ledger_points(ctx)
    c = apply_batch(ctx, [up("p", P3.replace("iota kappa lambda mu.", "iota kappa lambda NU.")), up("q", "other words entirely here")], "f", "r2")
    assert (c.upserted, c.unchanged, c.chunks_embedded, c.chunks_deleted) == (1, 1, 1, 1)
    after = ledger_points(ctx)
    assert len(set(before) & set(after)) == 2  # q's chunk and p's first chunk are the same points
    assert_store_matches_ledger(ctx)


def test_metadata_only_change_updates_payload_without_embedding(make_ctx):
    ctx = make_ctx(settings_for(SMALL))
    apply_batch(ctx, [up("p", P3, metadata={"v": 1})], "f", "r1")
    sid = _sid(ctx)
    pids = set(ledger_points(ctx))
    c = apply_batch(ctx, [up("p", P3, metadata={"v": 2})], "f", "r2")
    assert (c.upserted, c.chunks_embedded, c.chunks_deleted) == (1, 0, 0)
    assert set(ledger_points(ctx)) == pids
    assert {v["metadata"]["v"] for v in store_points(ctx).values()} == {2}
    assert _sid(ctx) != sid
    assert_store_matches_ledger(ctx)
    apply_batch(ctx, [up("p", P3, metadata={"v": 1})], "f", "r3")
    assert _sid(ctx) == sid  # back to the same content, back to the same id


def test_title_change_reembeds_when_title_is_embedded(make_ctx):
    titled = settings_for({"chunking": {**SMALL["chunking"], "max_tokens": 24, "include_title": True}})
    ctx = make_ctx(titled)
    apply_batch(ctx, [up("p", P3, title="Old")], "f", "r1")
    n = ctx.store.count()
    c = apply_batch(ctx, [up("p", P3, title="New")], "f", "r2")
    assert c.chunks_embedded == n and c.chunks_deleted == 0  # same point ids, new vectors
    assert {v["title"] for v in store_points(ctx).values()} == {"New"}
    assert_store_matches_ledger(ctx)
    untitled = make_ctx(settings_for(SMALL))
    apply_batch(untitled, [up("p", P3, title="Old")], "f", "r1")
    c = apply_batch(untitled, [up("p", P3, title="New")], "f", "r2")
    assert c.chunks_embedded == 0  # the title is payload only


def test_unchanged_record_with_newer_timestamp_only_touches_updated_at(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("x", "text", updated_at=ts(1))], "f", "r1")
    c = apply_batch(ctx, [up("x", "text", updated_at=ts(3))], "f", "r2")
    assert (c.unchanged, c.chunks_embedded) == (1, 0)
    assert ctx.ledger.get_documents(["x"])["x"].updated_at == ts(3)
    c = apply_batch(ctx, [up("x", "older edit", updated_at=ts(2))], "f", "r3")
    assert c.stale == 1


def test_replaying_a_batch_whose_ledger_commit_never_happened(make_ctx):
    """Crash between store writes and ledger commit: a replay converges to the same state."""
    ctx = make_ctx(settings_for(SMALL))
    apply_batch(ctx, [up("p", P3)], "f", "r1")
    batch = [up("p", P3.replace("alpha", "ALPHA")), up("q", "other words entirely here")]
    plan = plan_batch(ctx, batch, "f")
    cp = chunk_batch(ctx, plan, "r2")
    write_store(ctx, cp, embed_chunks(ctx, cp.to_embed))  # ... and the process dies here
    apply_batch(ctx, batch, "f", "r2")
    assert_store_matches_ledger(ctx)
    fresh = make_ctx(settings_for(SMALL))
    apply_batch(fresh, batch, "f", "r")
    assert _sid(fresh) == _sid(ctx)


# ---- the same pipeline on SQLite and on PostgreSQL ---------------------------------------------------


def _scenario(ctx, feed_dir):
    write_jsonl(feed_dir / "b-001.jsonl", [
        {"id": "b", "text": "The same text twice.", "updated_at": "2024-01-01T00:00:00Z"},
        {"id": "c", "text": "the same text   TWICE.", "metadata": {"k": 1}},
        {"id": "d", "title": "Dee", "text": P3, "updated_at": "2024-01-01T00:00:00+02:00"},
        {"id": "e", "text": "e is going away"},
    ])
    write_jsonl(feed_dir / "b-002.jsonl", [
        {"id": "a", "text": "The same text twice."},
        {"id": "e", "op": "delete"},
        {"id": "d", "title": "Dee", "text": "a stale edit", "updated_at": "2023-12-31T21:00:00Z"},
        {"id": "bad", "op": "merge", "text": "x"},
    ])
    write_jsonl(feed_dir / "b-003.jsonl", [{"id": "a", "op": "delete"}, {"id": "c", "text": "the same text   TWICE.", "metadata": {"k": 2}}])
    return ingest_path(ctx, feed_dir, "delta")


def test_pipeline_scenario_on_each_ledger_backend(make_ctx, tmp_path, ledger_url):
    lenient = {"validation": {"max_bad_fraction": 0.5}}
    ctx = make_ctx(settings_for({**lenient, "ledger": {"url": ledger_url}, "store": {"collection_prefix": "scenario"}}))
    out = _scenario(ctx, tmp_path / "news")
    c = out["counts"]
    assert (c["received"], c["deleted"], c["stale"], c["quarantined"], c["promoted"]) == (10, 2, 1, 1, 1)  # received counts every record read, good or bad
    assert statuses(ctx, "abcde") == {"a": ("deleted", None), "b": ("active", None), "c": ("duplicate", "b"), "d": ("active", None), "e": ("deleted", None)}
    assert _texts(ctx, ["d"]) == {"d": P3}
    assert [(q["file"], q["line"], q["record_id"]) for q in ctx.ledger.list_quarantine("news")] == [("b-002.jsonl", 4, "bad")]
    assert ctx.ledger.cursor("news")["last_file"] == "b-003.jsonl"
    assert doc_ids_in_store(ctx) == {"b", "d"}
    assert_store_matches_ledger(ctx)
    assert ingest_path(ctx, tmp_path / "news", "delta")["counts"]["received"] == 0
    # the same feed into a default (SQLite) workspace gives the same snapshot id
    ref = make_ctx(settings_for({**lenient, "store": {"collection_prefix": "scenario"}}))
    assert _scenario(ref, tmp_path / "news-ref")["snapshot"]["snapshot_id"] == out["snapshot"]["snapshot_id"]


@pytest.mark.parametrize(
    "rows",
    [
        [{"id": "n", "title": "nul \u0000 title", "text": "body text"}],
        [{"id": "x" * 600, "text": "id far too long"}],
        [{"id": "n\u0000", "text": "nul in id"}],
    ],
    ids=["nul-in-title", "id-longer-than-512", "nul-in-id"],
)
def test_hostile_record_is_quarantined_on_each_ledger_backend(make_ctx, tmp_path, ledger_url, rows):
    """A record the ledger cannot store must become a quarantine row on every back end, never
    an exception from the database in the middle of a run."""
    ctx = make_ctx(settings_for({"validation": {"max_bad_fraction": 0.5}, "ledger": {"url": ledger_url}, "store": {"collection_prefix": "hostile"}}))
    write_jsonl(tmp_path / "h" / "b-001.jsonl", [{"id": "good", "text": "a good record"}] + rows)
    ingest_path(ctx, tmp_path / "h", "delta")
    assert statuses(ctx, ["good"]) == {"good": ("active", None)}
    assert [q["line"] for q in ctx.ledger.list_quarantine()] == [2]
    assert ctx.ledger.cursor("h")["last_file"] == "b-001.jsonl"


def test_raw_nul_byte_line_is_quarantined_on_each_ledger_backend(make_ctx, tmp_path, ledger_url):
    ctx = make_ctx(settings_for({"validation": {"max_bad_fraction": 0.5}, "ledger": {"url": ledger_url}, "store": {"collection_prefix": "rawnul"}}))
    f = tmp_path / "h" / "b-001.jsonl"
    f.parent.mkdir()
    f.write_bytes(b'{"id": "good", "text": "a good record"}\n{"id": "raw", "text": "raw \x00 nul"}\n')
    ingest_path(ctx, tmp_path / "h", "delta")
    assert statuses(ctx, ["good"]) == {"good": ("active", None)}
    assert [q["line"] for q in ctx.ledger.list_quarantine()] == [2]


def test_full_snapshot_source_deletes_what_it_no_longer_holds(make_ctx, tmp_path):
    snap = tmp_path / "catalog"
    write_jsonl(snap / "part-1.jsonl", [{"id": "a", "text": "first product"}, {"id": "b", "text": "second product"}])
    ctx = make_ctx()
    ingest_path(ctx, snap, "snapshot")
    write_jsonl(snap / "part-1.jsonl", [{"id": "b", "text": "second product"}, {"id": "c", "text": "third product"}])
    out = ingest_path(ctx, snap, "snapshot")
    assert (out["counts"]["deleted"], out["counts"]["upserted"], out["counts"]["unchanged"]) == (1, 1, 1)
    assert doc_ids_in_store(ctx) == {"b", "c"}
    assert_store_matches_ledger(ctx)


def test_a_bulk_run_merges_the_store_segments_and_a_small_one_does_not(make_ctx, tmp_path):
    """`ingest.optimize_after_points`: a run writing that many points optimizes Qdrant Edge before it
    ends (content, snapshot id and search unchanged); a smaller run leaves the segments alone."""
    rows = [{"id": f"d{i}", "text": f"document number {i} about topic {i % 7} and more words {i * 3}"} for i in range(40)]
    feed = tmp_path / "bulk"
    write_jsonl(feed / "b-001.jsonl", rows)
    plain = make_ctx(settings_for({"ingest": {"optimize_after_points": None}}))
    out_plain = ingest_path(plain, feed, "delta")
    ctx = make_ctx(settings_for({"ingest": {"optimize_after_points": 40}}), workspace=tmp_path / "ws-opt")
    out = ingest_path(ctx, feed, "delta")
    assert "optimize" in out["timings_s"] and "optimize" not in out_plain["timings_s"]
    assert out["snapshot"]["snapshot_id"] == out_plain["snapshot"]["snapshot_id"]
    assert_store_matches_ledger(ctx)
    assert _top_doc(ctx, rows[5]["text"]) == "d5"
    write_jsonl(feed / "b-002.jsonl", [{"id": "d1", "op": "delete"}])
    assert "optimize" not in ingest_path(ctx, feed, "delta")["timings_s"]  # 0 points written
    assert_store_matches_ledger(ctx)


# ---- memory of long loads ------------------------------------------------------------------------


@pytest.mark.parametrize("stepwise", [True, False], ids=["indexes-in-steps", "older-shard-reopens"])
def test_a_long_load_compacts_the_store_between_batches_and_loses_nothing(make_ctx, tmp_path, stepwise):
    feed = tmp_path / "big"
    for k in range(4):
        write_jsonl(feed / f"b-{k:03d}.jsonl", [{"id": f"d{k}-{i}", "text": f"document {k} {i} " + "word " * (i % 5)} for i in range(30)])
    ctx = make_ctx(settings_for({"ingest": {"compact_store_every_points": 50}, "dedupe": {"near": False}}))
    if not stepwise:  # a shard made before SEGMENTS: its optimize would merge everything each time
        cfg = ctx.store.path / "edge_config.json"
        data = json.loads(cfg.read_text())
        data.pop("optimizers", None)
        ctx.close_store()
        cfg.write_text(json.dumps(data))
    assert ctx.store.indexes_in_steps is stepwise
    calls: list[str] = []
    store_cls = type(ctx.store)
    real_optimize, real_close = store_cls.optimize, type(ctx).close_store
    store_cls.optimize = lambda self: calls.append("optimize") or real_optimize(self)  # type: ignore[method-assign]
    type(ctx).close_store = lambda self: calls.append("reopen") or real_close(self)  # type: ignore[method-assign]
    try:
        out = ingest_path(ctx, feed, "delta")
    finally:
        store_cls.optimize, type(ctx).close_store = real_optimize, real_close
    assert out["counts"]["chunks_embedded"] == 120
    # 30 points per file: after files 2 and 4 the store was compacted in place, or closed to reopen
    assert calls == (["optimize"] * 2 if stepwise else ["reopen"] * 2)
    assert ctx.points_since_open < 50
    assert_store_matches_ledger(ctx)
    assert ctx.store.count() == 120 and _top_doc(ctx, "document 3 7 word word") == "d3-7"
