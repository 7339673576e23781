"""Reconcile: drift planted behind the ledger's back is found point by point, repaired from the
ledger's text, and the index is clean afterwards; what cannot be repaired is named."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from indexops.index.reconcile import CAP, IndexDrift, raise_if_drifted, reconcile, reconcile_markdown
from indexops.ingest.driver import ingest_path
from indexops.ledger import ChunkRow, Ledger, LedgerBusy, documents
from indexops.store.protocol import StorePoint
from tests.conftest import write_jsonl
from tests.unit._helpers import assert_store_matches_ledger, ledger_points, settings_for

SMALL = {"chunking": {"strategy": "recursive", "max_tokens": 12, "overlap_tokens": 0, "include_title": False}}
BACKENDS = {"edge": SMALL, "qdrant-memory": {**SMALL, "store": {"backend": "qdrant", "url": ":memory:"}}}


def _docs(n: int) -> list[dict]:
    # two or three short sentences per document: several chunks each at 12 tokens
    return [{"id": f"d{i:02d}", "title": f"T{i}", "metadata": {"n": i},
             "text": f"Document {i} opens here. It speaks of topic {i % 5} today. " + ("A third sentence follows. " if i % 2 else "")}
            for i in range(n)]


@pytest.fixture(params=sorted(BACKENDS))
def indexed(request, make_ctx, tmp_path):
    ctx = make_ctx(settings_for(BACKENDS[request.param]))
    write_jsonl(tmp_path / "feed" / "000001.jsonl", _docs(12))
    ingest_path(ctx, tmp_path / "feed", "delta")
    assert len(ledger_points(ctx)) > 12  # documents span several chunks
    return ctx


def _foreign(ctx, n: int = 1) -> list[str]:
    ids = sorted(str(uuid.uuid4()) for _ in range(n))
    ctx.store.upsert([StorePoint(i, [0.1] * ctx.embedder.dim, ([1], [1.0]), {"doc_id": "intruder", "chunk_hash": "?"}) for i in ids])
    ctx.store.flush()
    return ids


def test_clean_index_is_ok(indexed):
    r = reconcile(indexed)
    assert r.ok and r.found.clean and r.remaining is None
    n = len(ledger_points(indexed))
    assert (r.found.ledger_chunks, r.found.store_points, r.found.state_chunks) == (n, n, n)
    assert r.found.snapshot_id == r.found.recomputed_snapshot_id
    raise_if_drifted(r)  # no exception


def test_each_kind_of_drift_is_found_repaired_and_clean_afterwards(indexed):
    ctx = indexed
    before = {p["point_id"]: p for p in ctx.store.retrieve(sorted(ledger_points(ctx)), with_vectors=True)}
    led = ledger_points(ctx)
    gone, altered = sorted(led)[3], sorted(led)[7]
    ctx.store.delete([gone])  # a point deleted behind the ledger's back
    ctx.store.overwrite_payload(altered, {**before[altered]["payload"], "chunk_hash": "0" * 64})  # an overwritten hash
    intruders = _foreign(ctx, 2)  # points the ledger never wrote

    found = reconcile(ctx)
    assert not found.ok
    f = found.found
    assert (f.missing_in_store, f.extra_in_store, f.hash_mismatch) == ([gone], intruders, [altered])
    assert (f.n_missing, f.n_extra, f.n_mismatch) == (1, 2, 1)
    assert (f.ledger_chunks, f.store_points) == (len(led), len(led) + 1)
    with pytest.raises(IndexDrift, match=r"1 point\(s\) missing, 2 extra, 1 with a wrong chunk hash.*--repair"):
        raise_if_drifted(found)

    fixed = reconcile(ctx, repair=True)
    assert fixed.ok and fixed.remaining is not None and fixed.remaining.clean
    assert fixed.repaired == {"deleted": 2, "rewritten": 2, "accumulator_reset": 0}
    assert fixed.unrepairable == [] and fixed.n_unrepairable == 0
    assert_store_matches_ledger(ctx)
    after = {p["point_id"]: p for p in ctx.store.retrieve([gone, altered], with_vectors=True)}
    for pid in (gone, altered):  # re-created exactly as the ingest wrote them
        assert after[pid]["payload"] == before[pid]["payload"]
        assert after[pid]["dense"] == pytest.approx(before[pid]["dense"], abs=1e-6)
    assert reconcile(ctx).found.clean
    assert "consistent" in reconcile_markdown(fixed) and "| missing in store | 1 | 0 |" in reconcile_markdown(fixed)


def test_lists_are_capped_counts_are_complete_and_pages_do_not_matter(make_ctx, tmp_path):
    ctx = make_ctx(settings_for(SMALL))
    write_jsonl(tmp_path / "feed" / "000001.jsonl", _docs(6))
    ingest_path(ctx, tmp_path / "feed", "delta")
    intruders = _foreign(ctx, CAP + 30)
    for page in (1, 7, 1000):
        f = reconcile(ctx, page=page).found
        assert f.n_extra == CAP + 30 and f.extra_in_store == intruders[:CAP]
        assert f.n_missing == f.n_mismatch == 0
    r = reconcile(ctx, repair=True, page=7)
    assert r.ok and r.repaired["deleted"] == CAP + 30
    assert_store_matches_ledger(ctx)


class _Unordered:
    """A store whose scroll is not in id order (forces the spilled, sorted path)."""

    def __init__(self, inner):
        self._inner = inner

    def iter_points(self, fields, batch=1000):
        return iter(sorted(self._inner.iter_points(fields, batch), reverse=True))

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_a_store_that_does_not_scroll_in_id_order_gives_the_same_answer(make_ctx, tmp_path):
    ctx = make_ctx(settings_for(SMALL))
    write_jsonl(tmp_path / "feed" / "000001.jsonl", _docs(8))
    ingest_path(ctx, tmp_path / "feed", "delta")
    gone = sorted(ledger_points(ctx))[1]
    ctx.store.delete([gone])
    intruders = _foreign(ctx, 3)
    ordered = reconcile(ctx).found
    ctx._store = _Unordered(ctx.store)
    unordered = reconcile(ctx).found
    assert unordered.to_dict() == ordered.to_dict()
    assert (unordered.missing_in_store, unordered.extra_in_store) == ([gone], intruders)
    assert reconcile(ctx, repair=True).ok
    assert_store_matches_ledger(ctx)


def test_a_drifted_snapshot_sum_is_found_and_reset(indexed):
    ctx = indexed
    st = ctx.ledger.state(ctx.collection)
    ctx.ledger.set_accumulator(ctx.collection, st["acc"] + 1, st["chunks"])
    r = reconcile(ctx)
    assert not r.ok and not r.found.snapshot_ok and r.found.n_missing == r.found.n_extra == r.found.n_mismatch == 0
    fixed = reconcile(ctx, repair=True)
    assert fixed.ok and fixed.repaired["accumulator_reset"] == 1
    assert ctx.ledger.state(ctx.collection)["acc"] == st["acc"]


def test_what_cannot_be_repaired_is_reported_with_a_reason(make_ctx, tmp_path):
    ctx = make_ctx(settings_for(SMALL))
    write_jsonl(tmp_path / "feed" / "000001.jsonl", _docs(4))
    ingest_path(ctx, tmp_path / "feed", "delta")
    rows = {r.doc_id: r for rows in ctx.ledger.iter_chunks(ctx.collection) for r in rows}
    lost = rows["d01"]
    ctx.store.delete([lost.point_id])
    # the ledger's text of d01 no longer produces the lost chunk (edited by hand, say)
    with ctx.ledger.engine.begin() as c:
        c.execute(update(documents).where(documents.c.doc_id == "d01").values(text="Something else entirely."))
    r = reconcile(ctx, repair=True)
    assert not r.ok and r.n_unrepairable == 1
    assert r.unrepairable == [{"point_id": lost.point_id, "doc_id": "d01", "reason": "re-chunking the ledger's text no longer yields this chunk (text or chunker changed)"}]
    assert r.remaining.missing_in_store == [lost.point_id]
    with pytest.raises(IndexDrift, match="after repair.*Could not repair 1.*re-ingest"):
        raise_if_drifted(r)
    assert "DRIFT REMAINS" in reconcile_markdown(r)


def test_reconcile_waits_for_or_refuses_a_running_ingest(indexed):
    ctx = indexed
    owner = ctx.ledger.acquire_lock(ctx.collection)
    try:
        with pytest.raises(LedgerBusy, match="being ingested"):
            reconcile(ctx, repair=True)
    finally:
        ctx.ledger.release_lock(ctx.collection, owner)
    assert reconcile(ctx).ok


def test_ledger_streams_chunks_in_python_point_id_order(ledger_url):
    led = Ledger(ledger_url)
    try:
        led.ensure_state("col", {"r": 1})
        from indexops.ledger import BatchCommit

        rows = [ChunkRow(f"c{i}", f"d{i}", 0, f"h{i}", "e", str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}")), 1) for i in range(57)]
        led.commit_batch(BatchCommit(collection="col", feed="f", run_id="r", chunk_inserts=rows))
        pages = list(led.iter_chunks_by_point("col", batch=10))
        assert [len(p) for p in pages] == [10] * 5 + [7]
        assert [r.point_id for p in pages for r in p] == sorted(r.point_id for r in rows)
    finally:
        led.close()
