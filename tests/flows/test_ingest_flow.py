"""The ingest flow under Prefect's test harness, with the hashing embedder."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.ingest import ingest
from indexops.ledger import Ledger
from tests.conftest import REPO, write_jsonl

HASHING = str(REPO / "configs" / "hashing.yaml")


def _docs(n: int, start: int = 0, tag: str = "v1") -> list[dict]:
    return [
        {"id": f"doc-{i:03d}", "title": f"Title {i}", "text": f"Document number {i} talks about topic {i % 7} and {tag} details number {i * 13}.",
         "updated_at": "2026-01-01T00:00:00Z"}
        for i in range(start, start + n)
    ]


def _run(feed: Path, ws: Path, **kw):
    return ingest(feed_path=str(feed), workspace=str(ws), config_path=HASHING, **kw)


def test_ingest_applies_each_file_once_and_names_the_snapshot(tmp_path):
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    write_jsonl(feed / "000001-a.jsonl", _docs(30))
    s1 = _run(feed, ws)
    assert s1["counts"]["upserted"] == 30
    assert s1["counts"]["chunks_embedded"] >= 30
    assert s1["files"] == ["000001-a.jsonl"]
    assert s1["snapshot"]["documents"] == 30

    write_jsonl(feed / "000002-b.jsonl", [{"id": "doc-000", "op": "delete"}] + _docs(2, start=100))
    s2 = _run(feed, ws)
    assert s2["files"] == ["000002-b.jsonl"]
    assert (s2["counts"]["deleted"], s2["counts"]["upserted"]) == (1, 2)
    assert s2["snapshot"]["documents"] == 31
    assert s2["snapshot"]["parent"] == s1["snapshot"]["snapshot_id"]

    s3 = _run(feed, ws)  # nothing new: nothing embedded, same snapshot, no new row
    assert s3["files"] == [] and s3["counts"]["chunks_embedded"] == 0
    assert s3["snapshot"]["snapshot_id"] == s2["snapshot"]["snapshot_id"] and not s3["snapshot"]["new"]
    assert set(s3["timings_s"]) >= {"scan", "snapshot"}


def test_artifact_reports_counts_and_snapshot(tmp_path):
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    write_jsonl(feed / "000001-a.jsonl", _docs(5))
    s = _run(feed, ws, feed_name="artifact-feed")

    async def read():
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        async with get_client() as c:
            return await c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ingest-artifact-feed"])))

    arts = asyncio.run(read())
    assert arts, "no markdown artifact with the feed's key"
    md = arts[0].data
    assert s["snapshot"]["snapshot_id"] in md
    assert "| documents (re)indexed | 5 |" in md


def test_rejected_batch_fails_the_flow_keeps_cursor_and_lands_after_fix(tmp_path):
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    bad = _docs(10) + [{"title": "no id", "text": "x"}, {"id": "doc-x", "op": "upsert"}]
    write_jsonl(feed / "000001-a.jsonl", bad)
    with pytest.raises(Exception) as ei:
        _run(feed, ws)
    msg = str(ei.value)
    assert "000001-a.jsonl" in msg and "feed" in msg and "threshold" in msg
    led = Ledger.for_workspace(ws)
    assert led.cursor("feed") is None
    assert len(led.list_quarantine()) == 2
    assert led.document_counts().get("active", 0) == 0

    write_jsonl(feed / "000001-a.jsonl", _docs(10))  # corrected in place: never applied, so it is pending
    s = _run(feed, ws)
    assert s["counts"]["upserted"] == 10
    assert Ledger.for_workspace(ws).cursor("feed")["last_file"] == "000001-a.jsonl"


def test_changed_file_after_apply_is_reported_not_reapplied(tmp_path):
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    f = write_jsonl(feed / "000001-a.jsonl", _docs(3))
    _run(feed, ws)
    write_jsonl(f, _docs(3, tag="edited"))
    s = _run(feed, ws)
    assert s["changed_after_apply"] == ["000001-a.jsonl"]
    assert s["counts"]["upserted"] == 0 and s["files"] == []


def test_second_ingest_of_same_index_is_refused_while_one_runs(tmp_path):
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    write_jsonl(feed / "000001-a.jsonl", _docs(3))
    _run(feed, ws)
    from indexops.index.context import open_index
    from indexops.settings import load_settings

    ctx = open_index(ws, load_settings(HASHING))
    owner = ctx.ledger.acquire_lock(ctx.collection)
    try:
        with pytest.raises(Exception, match="being ingested"):
            _run(feed, ws)
    finally:
        ctx.ledger.release_lock(ctx.collection, owner)
        ctx.close()


def test_beir_folder_and_full_snapshot_sources(tmp_path):
    beir = tmp_path / "beir"
    write_jsonl(beir / "corpus.jsonl", [{"_id": f"b{i}", "title": f"T{i}", "text": f"beir text {i} about cells and proteins {i * 3}"} for i in range(12)])
    s = _run(beir, tmp_path / "ws1")
    assert s["source_kind"] == "beir" and s["snapshot"]["documents"] == 12

    snap = tmp_path / "snap"
    write_jsonl(snap / "all.jsonl", _docs(6))
    ws2 = tmp_path / "ws2"
    _run(snap, ws2, source_kind="snapshot", feed_name="snap")
    write_jsonl(snap / "all.jsonl", _docs(4))  # two documents disappear from the snapshot
    s2 = _run(snap, ws2, source_kind="snapshot", feed_name="snap")
    assert s2["counts"]["deleted"] == 2 and s2["counts"]["unchanged"] == 4
    assert s2["snapshot"]["documents"] == 4


def test_a_bulk_run_optimizes_the_store_as_a_task(tmp_path):
    """Above `ingest.optimize_after_points` the flow runs `optimize_store` before publishing the snapshot."""
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    write_jsonl(feed / "000001-a.jsonl", _docs(30))
    cfg = tmp_path / "bulk.yaml"
    cfg.write_text(Path(HASHING).read_text() + "ingest:\n  optimize_after_points: 10\n")
    s = ingest(feed_path=str(feed), workspace=str(ws), config_path=str(cfg))
    assert "optimize" in s["timings_s"] and s["snapshot"]["documents"] == 30
    assert "optimize" not in _run(tmp_path / "feed", tmp_path / "ws2")["timings_s"]  # default threshold 50,000


def test_a_run_with_nothing_pending_does_not_queue_behind_the_concurrency_limit(tmp_path):
    """While another ingest holds the global limit's only slot, a run with nothing to apply still
    finishes at once (it writes nothing); a run with a pending file waits and gives up after --wait."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency

    feed, ws = tmp_path / "feed", tmp_path / "ws"
    write_jsonl(feed / "000001-a.jsonl", _docs(3))
    first = _run(feed, ws)

    async def limit(create: bool) -> None:
        async with get_client() as c:
            if create:
                await c.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="indexops-ingest", limit=1))
            else:
                await c.delete_global_concurrency_limit_by_name("indexops-ingest")

    asyncio.run(limit(True))
    try:
        with concurrency("indexops-ingest", occupy=1):  # another ingest is running
            idle = _run(feed, ws, lock_wait_s=2.0)
            assert idle["files"] == [] and idle["snapshot"]["snapshot_id"] == first["snapshot"]["snapshot_id"]
            write_jsonl(feed / "000002-b.jsonl", _docs(1, start=50))
            with pytest.raises(TimeoutError):
                _run(feed, ws, lock_wait_s=2.0)
        assert _run(feed, ws)["files"] == ["000002-b.jsonl"]  # the slot is free again: the file lands
    finally:
        asyncio.run(limit(False))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_with_an_encoder_pool_the_next_batch_file_is_read_while_one_encodes(tmp_path, monkeypatch):
    """Real model in two worker processes: the flow queues each batch's texts, reads and chunks the
    next file while they encode, and every stored vector is the one the model gives its text."""
    import numpy as np

    from indexops.embed.factory import make_embedder
    from indexops.embed.pool import shutdown_pools
    from indexops.index.context import open_index
    from indexops.settings import load_settings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    docs = _docs(60)
    for k in range(3):
        write_jsonl(feed / f"00000{k}-x.jsonl", docs[k * 20 : (k + 1) * 20])
    cfg = tmp_path / "pool.yaml"
    cfg.write_text("embedding:\n  model: all-MiniLM-L6-v2\n  backend: torch\n  workers: 2\n  pool_min_texts: 8\n"
                   "chunking:\n  strategy: document\ndedupe:\n  near: false\n")
    try:
        s = ingest(feed_path=str(feed), workspace=str(ws), config_path=str(cfg))
    finally:
        shutdown_pools()
    assert s["counts"]["chunks_embedded"] == 60 and s["timings_s"]["ahead"] > 0
    ctx = open_index(ws, load_settings(cfg))
    try:
        rows = ctx.ledger.chunks_for_docs(ctx.collection, [d["id"] for d in docs])
        pts = {p["payload"]["doc_id"]: p for p in ctx.store.retrieve([rows[d["id"]][0].point_id for d in docs], with_vectors=True)}
        want = make_embedder("all-MiniLM-L6-v2", backend="torch").embed([pts[d["id"]]["payload"]["title"] + "\n" + d["text"] for d in docs])
        np.testing.assert_allclose(np.array([pts[d["id"]]["dense"] for d in docs]), want, atol=1e-5)
    finally:
        ctx.close()
