"""Real parts, really started: the ingest flow against `prefect server start`, and the real
embedding model on the bundled sample feed."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.conftest import REPO, write_jsonl

SAMPLE = REPO / "indexops" / "sample_data"


def test_flow_run_is_recorded_on_a_real_prefect_server(prefect_api, tmp_path):
    """The flow runs in its own process (as a deployment's would), against the session server."""
    import json
    import os
    import subprocess
    import sys

    from prefect.client.orchestration import get_client

    feed = tmp_path / "feed"
    write_jsonl(feed / "000001-a.jsonl", [{"id": f"d{i}", "text": f"text {i} about servers"} for i in range(5)])
    code = (
        "import json, sys\nfrom flows.ingest import ingest\n"
        f"s = ingest(feed_path={str(feed)!r}, workspace={str(tmp_path / 'ws')!r}, config_path={str(REPO / 'configs' / 'hashing.yaml')!r})\n"
        "print(json.dumps({'run_id': s['run_id']}))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=dict(os.environ, PREFECT_API_URL=prefect_api))
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads(p.stdout.strip().splitlines()[-1])

    expected = {"scan_source", "validate_batch", "plan_changes", "chunk_documents", "embed_chunks", "write_index", "commit_ledger", "publish_snapshot"}

    async def read():
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        async with get_client() as c:
            fr = await c.read_flow_run(s["run_id"])
            # task runs reach the server through the events pipeline: allow it a few seconds
            for _ in range(60):
                trs = await c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
                names = {t.name.rsplit("-", 1)[0] for t in trs}
                if expected <= names:
                    break
                await asyncio.sleep(0.5)
            return fr, names

    fr, names = asyncio.run(read())
    assert fr.state.is_completed()
    assert expected <= names
    assert fr.parameters == {"feed_path": str(feed), "workspace": str(tmp_path / "ws"), "config_path": str(REPO / "configs" / "hashing.yaml"),
                             "source_kind": "auto", "feed_name": None, "embedding_model": None, "lock_wait_s": 0.0}


def test_real_model_ingest_and_search_sample_feed(tmp_path):
    """all-MiniLM-L6-v2 from the offline package: 384-d vectors, a weights fingerprint in the
    recipe, and a paraphrased query finds the right help article by dense search."""
    from indexops.index.context import open_index
    from indexops.ingest.driver import ingest_path
    from indexops.settings import load_settings

    feed = tmp_path / "feed"
    feed.mkdir()
    shutil.copy(SAMPLE / "feed" / "000001-initial.jsonl", feed)
    ctx = open_index(tmp_path / "ws", load_settings())
    try:
        r = ingest_path(ctx, feed, "delta")
        emb = r["snapshot"]["recipe"]["embedding"]
        assert emb["dim"] == 384 and emb["model"] == "all-MiniLM-L6-v2" and len(emb["fingerprint"]) == 64
        q = ctx.embedder.embed(["I forgot my login password"])[0]
        hits = ctx.store.search_dense(q.tolist(), 3)
        assert hits[0].payload["doc_id"] == "kb-001"
        sparse = ctx.store.search_sparse(ctx.bm25.query("HTTP 429 Retry-After"), 3)
        assert sparse[0].payload["doc_id"] == "kb-004"
    finally:
        ctx.close()


@pytest.mark.slow
def test_scifact_subset_token_windows_cover_whole_abstracts(scifact_dir, tmp_path):
    """On real SciFact abstracts (most exceed 256 tokens) every word of a document lands in a chunk."""
    import json

    from indexops.index.context import open_index
    from indexops.settings import load_settings

    docs = [json.loads(l) for l in open(scifact_dir / "corpus.jsonl")][:40]
    ctx = open_index(tmp_path / "ws", load_settings(overrides={"chunking": {"strategy": "token_window"}}))
    try:
        tok = ctx.embedder.tokenizer()
        long_docs = [d for d in docs if len(tok.spans(d["text"])) > 254]
        assert long_docs, "expected abstracts longer than the model window"
        for d in long_docs[:5]:
            res = ctx.chunker.chunk(d["_id"], d["title"], d["text"], {})
            assert len(res.chunks) >= 2
            covered = set()
            for c in res.chunks:
                start = d["text"].find(c.text)
                assert start >= 0
                covered.update(range(start, start + len(c.text)))
                assert len(tok.spans(c.embed_text)) <= 254
            words = [m for m in range(len(d["text"])) if not d["text"][m].isspace()]
            assert set(words) <= covered
    finally:
        ctx.close()


def test_qdrant_sparse_matches_rank_bm25_reference_on_scifact(scifact_dir, tmp_path):
    """Parity on real data: Qdrant Edge's BM25 (+IDF) against the Okapi reference with the same
    analysis steps, on the first 1,500 SciFact documents and the train queries judged on them."""
    import json

    from indexops.eval.evaluate import evaluate_snapshot
    from indexops.eval.queries import QuerySet, beir_split
    from indexops.index.context import open_index
    from indexops.ingest.driver import ingest_path
    from indexops.settings import load_settings

    sub = tmp_path / "scifact-sub"
    sub.mkdir()
    lines = open(scifact_dir / "corpus.jsonl").readlines()[:1500]
    (sub / "corpus.jsonl").write_text("".join(lines))
    ids = {json.loads(l)["_id"] for l in lines}
    full = beir_split(scifact_dir, "train")
    qrels = {q: {d: g for d, g in rel.items() if d in ids} for q, rel in full.qrels.items()}
    qrels = {q: r for q, r in qrels.items() if r}
    qs = QuerySet(name="scifact-sub/train", queries={q: full.queries[q] for q in qrels}, qrels=qrels)
    assert len(qs) > 100
    ctx = open_index(tmp_path / "ws", load_settings(REPO / "configs" / "hashing.yaml", {"dedupe": {"near": False}}))
    try:
        ingest_path(ctx, sub, "beir")
        ref = evaluate_snapshot(ctx, qs, "bm25", ["ndcg@10", "recall@100"], store=False).metrics
        qd = evaluate_snapshot(ctx, qs, "sparse", ["ndcg@10", "recall@100"], store=False).metrics
    finally:
        ctx.close()
    assert ref["ndcg@10"] > 0.5
    assert abs(ref["ndcg@10"] - qd["ndcg@10"]) < 0.02, (ref, qd)
    assert abs(ref["recall@100"] - qd["recall@100"]) < 0.02, (ref, qd)
