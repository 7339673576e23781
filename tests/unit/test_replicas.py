"""Published read replicas: what readers open instead of the writer's Qdrant Edge shard."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from indexops.index import replicas
from indexops.index.context import open_index, snapshot_id_for
from indexops.index.promotion import edge_retained, promote, rollback_to
from indexops.index.reader import Index, open_live, open_snapshot
from indexops.index.snapshot import current_snapshot_id, publish_snapshot
from indexops.ingest.driver import ingest_path
from indexops.ingest.stages import apply_batch, new_run_id
from indexops.ledger import multiset_term
from indexops.store.edge import EdgeStore
from indexops.store.protocol import StorePoint
from tests.unit._helpers import rm, settings_for, up

SAMPLE = Path(__file__).resolve().parents[2] / "indexops" / "sample_data"


def _settings(**serving):
    return settings_for({"serving": {"verify_links": True, **serving}})


def _apply(ctx, records) -> str:
    """One batch through the core stages, then the snapshot (which publishes it)."""
    run = new_run_id()
    apply_batch(ctx, records, "feed", run)
    return publish_snapshot(ctx, run)["snapshot_id"]


def _ledger_set(ctx) -> dict[str, str]:
    return {r.point_id: r.chunk_hash for rows in ctx.ledger.iter_chunks(ctx.collection) for r in rows}


def _replica_set(ctx) -> dict[str, str]:
    return {pid: p["chunk_hash"] for pid, p in ctx.store.iter_points(["chunk_hash"])}


def _docs(n: int, seed: int, prefix: str = "d") -> list:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(400)]
    return [up(f"{prefix}{i}", " ".join(rng.choice(words, 60)), title=f"doc {i}") for i in range(n)]


def _files(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for dirpath, _d, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _segmented_shard(path: Path) -> EdgeStore:
    """A writer shard with several segments (indexed ones beside the appendable one) and deletes."""
    s = EdgeStore(path, "c", 256)
    rng = np.random.default_rng(0)

    def pts(a: int, b: int) -> list[StorePoint]:
        return [StorePoint(str(uuid.uuid5(uuid.NAMESPACE_DNS, str(i))), rng.random(256).astype(np.float32),
                           ([1, 2 + i % 50], [1.0, 0.5]), {"doc_id": f"d{i}", "chunk_hash": "h", "text": "x" * 40}) for i in range(a, b)]

    for k in range(0, 22_000, 11_000):  # 11k x 1 KiB vectors each: over Edge's indexing threshold
        s.upsert(pts(k, k + 12_000))
        s.optimize()
    s.upsert(pts(22_000, 22_500))
    s.delete([str(uuid.uuid5(uuid.NAMESPACE_DNS, str(i))) for i in range(0, 22_000, 97)])
    s.flush()
    return s


def test_a_readers_load_and_search_write_no_file_replicas_share(tmp_path):
    """The assumption hard links rest on, checked against the installed Qdrant Edge: loading and
    searching a published replica writes none of the bulk files `_LINKABLE` names (it does rewrite
    small metadata files: those are copied per replica). Fails if an Edge upgrade changes that."""
    import qdrant_edge as qe

    s = _segmented_shard(tmp_path / "writer")
    rep = replicas.publish(s.path, tmp_path, "c", "a" * 64, retention=2)
    s.close()
    shard = tmp_path / "replicas" / "c" / rep.replica / "shard"
    before = _files(shard)
    linkable = {k for k in before if replicas._LINKABLE.search(k)}
    assert len({k.split("/")[1] for k in linkable if k.startswith("segments/")}) >= 2  # several segments' bulk files
    for _ in range(3):
        sh = qe.EdgeShard.load(str(shard))
        for _ in range(5):
            sh.query(qe.QueryRequest(limit=5, query=qe.Query.Nearest([0.5] * 256, using="dense"), with_payload=True))
        sh.close()
    after = _files(shard)
    assert {k: after[k] for k in linkable} == {k: before[k] for k in linkable}


def test_publish_links_unchanged_bulk_files_and_copies_what_moved(tmp_path):
    s = _segmented_shard(tmp_path / "writer")
    first = replicas.publish(s.path, tmp_path, "c", "a" * 64, retention=3, verify_links=True)
    assert first.files_linked == 0 and first.files_copied > 0
    rng = np.random.default_rng(1)
    s.upsert([StorePoint(str(uuid.uuid4()), rng.random(256).astype(np.float32), ([3], [1.0]), {"doc_id": "n", "chunk_hash": "h"})
              for _ in range(50)])
    s.flush()
    second = replicas.publish(s.path, tmp_path, "c", "b" * 64, retention=3, verify_links=True)
    s.close()
    assert second.files_linked > 0
    assert second.bytes_copied < first.bytes_copied / 2  # what the delta touched, not the shard
    # the two replicas share inodes for the linked files, and nothing with the writer
    r1, r2 = (tmp_path / "replicas" / "c" / r / "shard" for r in (first.replica, second.replica))
    writer_inodes = {p.stat().st_ino for p in (tmp_path / "writer").rglob("*") if p.is_file()}
    shared = {p.stat().st_ino for p in r1.rglob("*") if p.is_file()} & {p.stat().st_ino for p in r2.rglob("*") if p.is_file()}
    assert len(shared) == second.files_linked
    assert not shared & writer_inodes
    assert json.loads((r2 / "edge_config.json").read_text())["wal_enabled"] is False


def test_each_published_snapshot_holds_exactly_its_chunk_set(make_ctx):
    ctx = make_ctx(_settings(retention=10))
    recorded = {}
    batches = [_docs(120, 0), _docs(40, 1)[:30] + [rm(f"d{i}") for i in range(30, 50)], _docs(10, 2, prefix="n"),
               [rm(f"n{i}") for i in range(5)] + _docs(20, 3)[:10]]
    for b in batches:
        sid = _apply(ctx, b)
        recorded[sid] = _ledger_set(ctx)
    assert len(recorded) == len(batches)
    for sid, chunks in recorded.items():
        r = open_snapshot(ctx.workspace, ctx.settings, sid)
        try:
            assert r.snapshot_id == sid
            assert _replica_set(r) == chunks
        finally:
            r.close()


def test_retention_keeps_the_newest_and_any_a_reader_holds(make_ctx):
    ctx = make_ctx(_settings(retention=2))
    sids = [_apply(ctx, _docs(20, 0))]
    held = Index.open(ctx.workspace, ctx.settings, snapshot=sids[0])  # a reader on the first snapshot
    for i in range(1, 5):
        sids.append(_apply(ctx, _docs(20 + i, i)))
    root = replicas.replicas_root(ctx.workspace, ctx.collection)
    assert [r.snapshot_id for r in replicas.list_replicas(root)] == [sids[0], sids[3], sids[4]]
    assert held.search("w1 w2", k=3).snapshot_id == sids[0]  # still readable while held
    with pytest.raises(replicas.SnapshotNotRetained, match="no longer retained"):
        open_snapshot(ctx.workspace, ctx.settings, sids[1])
    held.close()
    sids.append(_apply(ctx, _docs(30, 9)))
    assert [r.snapshot_id for r in replicas.list_replicas(root)] == sids[-2:]


def test_an_open_index_follows_new_snapshots_and_a_pinned_one_stays(make_ctx):
    ctx = make_ctx(_settings())
    s1 = _apply(ctx, _docs(50, 0))
    follower = Index.open(ctx.workspace, ctx.settings)
    pinned = Index.open(ctx.workspace, ctx.settings, snapshot=s1[:12])
    assert follower.search("w3", k=2).snapshot_id == s1
    s2 = _apply(ctx, [up("zz", "quantum chromodynamics gluon plasma")])
    ans = follower.search("quantum chromodynamics gluon", k=1)
    assert ans.snapshot_id == s2 and ans.hits[0]["doc_id"] == "zz"
    assert pinned.search("quantum chromodynamics gluon", k=1).snapshot_id == s1
    follower.close()
    pinned.close()


def test_a_replica_is_never_written(make_ctx):
    ctx = make_ctx(_settings())
    _apply(ctx, _docs(10, 0))
    r = open_live(ctx.workspace, ctx.settings)
    try:
        with pytest.raises(PermissionError, match="published replica"):
            r.store.delete(["00000000-0000-0000-0000-000000000000"])
    finally:
        r.close()


def test_rollback_to_serves_exactly_that_snapshot_until_promoted(make_ctx):
    ctx = make_ctx(_settings(retention=5))
    s1 = _apply(ctx, _docs(60, 0))
    chunks1 = _ledger_set(ctx)
    _apply(ctx, _docs(30, 1) + [rm(f"d{i}") for i in range(40, 60)])
    retained = edge_retained(ctx.settings, ctx.workspace)
    a = rollback_to(ctx.ledger, s1[:10], "bad batch", retained=retained)
    assert a["pinned"] and a["snapshot_id"] == s1
    s3 = _apply(ctx, _docs(5, 7, prefix="x"))  # ingests go on; live stays pinned
    live = open_live(ctx.workspace, ctx.settings)
    try:
        assert live.snapshot_id == s1
        pts = dict(live.store.iter_points(["chunk_id", "chunk_hash"]))
        assert {pid: p["chunk_hash"] for pid, p in pts.items()} == chunks1
        acc = sum(multiset_term(p["chunk_id"], p["chunk_hash"]) for p in pts.values())
        assert snapshot_id_for(acc, len(pts), live.recipe) == s1  # recomputed from what is served
    finally:
        live.close()
    promote(ctx.ledger, s3, retained=retained)  # the current one: live follows again
    live = open_live(ctx.workspace, ctx.settings)
    try:
        assert live.snapshot_id == s3 == current_snapshot_id(ctx.ledger, ctx.collection)
    finally:
        live.close()


def test_rollback_to_a_snapshot_no_longer_retained_says_so(make_ctx):
    ctx = make_ctx(_settings(retention=1))
    s1 = _apply(ctx, _docs(10, 0))
    _apply(ctx, _docs(12, 1))
    with pytest.raises(replicas.SnapshotNotRetained, match="no longer retained"):
        rollback_to(ctx.ledger, s1, retained=edge_retained(ctx.settings, ctx.workspace))


def test_eval_of_a_pinned_snapshot_reproduces_its_stored_eval(tmp_path):
    from indexops.eval.evaluate import evaluate_snapshot
    from indexops.eval.queries import load_query_set

    s = settings_for({"serving": {"verify_links": True}, "validation": {"max_bad_fraction": 0.5}})  # the sample feed quarantines a row
    feed = tmp_path / "feed"
    feed.mkdir()
    files = sorted((SAMPLE / "feed").iterdir())
    shutil.copy(files[0], feed / files[0].name)
    ws = tmp_path / "ws"
    w = open_index(ws, s)
    s1 = ingest_path(w, feed, "delta")["snapshot"]["snapshot_id"]
    qs = load_query_set(SAMPLE / "queries.jsonl", SAMPLE / "qrels" / "test.tsv")
    r = open_live(ws, s)
    first = {n: evaluate_snapshot(r, qs, n, s.eval.metrics) for n in ("hybrid", "bm25")}
    r.close()
    for f in files[1:]:
        shutil.copy(f, feed / f.name)
    s2 = ingest_path(w, feed, "delta")["snapshot"]["snapshot_id"]
    assert s2 != s1
    r = open_snapshot(ws, s, s1)
    try:
        for n, o in first.items():
            again = evaluate_snapshot(r, qs, n, s.eval.metrics, store=False)
            assert again.snapshot_id == s1
            assert again.metrics == o.metrics
            stored_per_query, stored_rankings = w.ledger.eval_queries(o.eval_id)
            assert again.per_query == stored_per_query
    finally:
        r.close()
        w.close()


@pytest.mark.parametrize("backend", ["edge", "qdrant"])
def test_the_reader_api_on_both_backends(tmp_path, backend):
    over = {"store": {"backend": "qdrant", "url": str(tmp_path / "qdrant-local")}} if backend == "qdrant" else {}
    s = settings_for(over)
    w = open_index(tmp_path / "ws", s)
    run = new_run_id()
    apply_batch(w, [up("a", "solar panels convert sunlight"), up("b", "wind turbines convert wind")], "feed", run)
    sid = publish_snapshot(w, run)["snapshot_id"]
    w.close()  # qdrant-client local mode is one process at a time; a server handles concurrency itself
    with Index.open(tmp_path / "ws", s) as ix:
        ans = ix.search("sunlight solar", k=1)
        assert ans.snapshot_id == sid
        assert ans.hits[0]["doc_id"] == "a"
    assert (tmp_path / "ws" / "replicas").exists() is (backend == "edge")


def test_a_copy_edge_cannot_load_is_made_again_and_never_shown_to_readers(make_ctx, monkeypatch):
    ctx = make_ctx(_settings())
    s1 = _apply(ctx, _docs(30, 0))
    real, calls = replicas._settle, []

    def flaky(staging, linked):
        calls.append(staging)
        if len(calls) == 1:  # what the soak saw once: Edge fails to load the fresh copy
            raise RuntimeError("Failed to deserialize payload: EOF while parsing a string")
        return real(staging, linked)

    monkeypatch.setattr(replicas, "_settle", flaky)
    run = new_run_id()
    apply_batch(ctx, _docs(5, 1, prefix="n"), "feed", run)
    m = publish_snapshot(ctx, run)
    assert m["published"]["attempts"] == 2 and "deserialize" in m["published"]["load_errors"][0]
    r = open_live(ctx.workspace, ctx.settings)
    try:
        assert r.snapshot_id == m["snapshot_id"] != s1
        assert _replica_set(r) == _ledger_set(ctx)
    finally:
        r.close()
    monkeypatch.setattr(replicas, "_settle", lambda staging, linked: (_ for _ in ()).throw(RuntimeError("never loads")))
    apply_batch(ctx, _docs(3, 2, prefix="m"), "feed", run)
    with pytest.raises(RuntimeError, match="did not load 3 times"):
        publish_snapshot(ctx, run)
    assert replicas.head(replicas.replicas_root(ctx.workspace, ctx.collection)).snapshot_id == m["snapshot_id"]


def test_a_workspace_built_before_replicas_is_published_on_its_first_read(make_ctx):
    ctx = make_ctx(_settings())
    apply_batch(ctx, _docs(20, 0), "feed", new_run_id())  # committed, never published (older code)
    ctx.close_store()
    root = replicas.replicas_root(ctx.workspace, ctx.collection)
    assert replicas.head(root) is None
    with Index.open(ctx.workspace, ctx.settings) as ix:
        assert ix.search("w1 w2", k=2).snapshot_id == current_snapshot_id(ctx.ledger, ctx.collection)
    assert replicas.head(root).snapshot_id == current_snapshot_id(ctx.ledger, ctx.collection)
    r = open_live(ctx.workspace, ctx.settings)
    try:
        assert _replica_set(r) == _ledger_set(ctx)
    finally:
        r.close()
