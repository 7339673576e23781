"""The `auto` backend choice and the pool of encoder processes (`indexops/embed/pool.py`), on the bundled
all-MiniLM-L6-v2 (real model, real child interpreters)."""

from __future__ import annotations

import numpy as np
import pytest

from indexops.embed import pool as embed_pool
from indexops.embed.factory import default_batch_size, make_embedder, resolve_backend
from indexops.embed.pool import PooledEmbedder, WorkerDied, shutdown_pools
from indexops.embed.torch import SentenceTransformerEmbedder
from indexops.index.context import open_index, pooled
from indexops.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "all-MiniLM-L6-v2"
TEXTS = [f"Sample sentence {i} about {topic} in clinical trials." * (1 + i % 7)
         for i, topic in enumerate(["insulin", "microglia", "BRCA1", "antibiotics", "statins", "p53"] * 12)]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def fp32_vecs():
    return SentenceTransformerEmbedder(MODEL).embed(TEXTS)


def test_auto_backend_follows_the_cpu_and_is_torch_elsewhere(monkeypatch):
    import indexops.embed.cpu as ov

    assert resolve_backend("auto") == ("openvino-bf16" if ov.cpu_has_bf16() else "onnx-int8")
    monkeypatch.setattr(ov, "cpu_has_bf16", lambda: False)
    assert resolve_backend("auto") == "onnx-int8"
    monkeypatch.setattr(ov, "cpu_has_bf16", lambda: True)
    assert resolve_backend("auto") == "openvino-bf16"
    assert resolve_backend("auto", device="cuda") == "torch"
    assert resolve_backend("onnx") == "onnx"
    assert default_batch_size("onnx-int8") == 16 and default_batch_size("torch") == 64


def test_the_ledger_records_the_backend_auto_resolved_to(tmp_path):
    s = Settings.model_validate({"embedding": {"model": "hashing", "dim": 16}})
    ctx = open_index(tmp_path, s)
    try:
        assert ctx.settings.embedding.backend == resolve_backend("auto")
        stored = ctx.ledger.collection_settings(ctx.collection)
        assert stored["embedding"]["backend"] == resolve_backend("auto")
    finally:
        ctx.close()


def test_pooled_embedder_matches_in_process_and_keeps_order(fp32_vecs):
    s = Settings.model_validate({"embedding": {"backend": "torch", "workers": 2, "pool_min_texts": 40}})
    local = make_embedder(MODEL, backend="torch")
    emb = pooled(local, s)
    assert isinstance(emb, PooledEmbedder) and emb.workers == 2
    try:
        small = emb.embed(TEXTS[:10])  # below pool_min_texts and no pool yet: in-process
        assert not embed_pool._POOLS
        v = emb.embed(TEXTS)
        assert len(embed_pool._POOLS) == 1 and len(next(iter(embed_pool._POOLS.values())).workers) == 2
        np.testing.assert_allclose(v, fp32_vecs, atol=1e-5)  # same model, same order, other processes
        np.testing.assert_allclose(small, fp32_vecs[:10], atol=1e-5)
        seen = []
        again = emb.embed(TEXTS[:33], progress=lambda d, n: seen.append((d, n)))  # warm pool: from 32 texts on
        np.testing.assert_allclose(again, fp32_vecs[:33], atol=1e-5)
        assert seen[-1] == (33, 33)
        assert emb.fingerprint() == local.fingerprint() and emb.dim == local.dim
    finally:
        shutdown_pools()
    assert not embed_pool._POOLS


def test_a_killed_worker_fails_the_call_clearly_and_the_next_call_starts_fresh_workers(fp32_vecs):
    s = Settings.model_validate({"embedding": {"backend": "torch", "workers": 2, "pool_min_texts": 40}})
    emb = pooled(make_embedder(MODEL, backend="torch"), s)
    try:
        emb.embed(TEXTS)
        workers = next(iter(embed_pool._POOLS.values())).workers
        workers[0].proc.kill()
        workers[0].proc.wait()
        with pytest.raises(WorkerDied, match="exited"):
            emb.embed(TEXTS)
        assert not embed_pool._POOLS  # the broken pool is gone
        np.testing.assert_allclose(emb.embed(TEXTS), fp32_vecs, atol=1e-5)
    finally:
        shutdown_pools()


def test_a_worker_that_cannot_load_the_model_says_why(tmp_path):
    missing = tmp_path / "no-model"
    missing.mkdir()
    local = make_embedder("hashing", dim=8)
    emb = PooledEmbedder(local, {"model": str(missing), "dim": 8, "batch_size": None, "device": "cpu", "normalize": True,
                                 "backend": "torch"}, workers=2, min_texts=1)
    try:
        with pytest.raises(WorkerDied, match="failed"):
            emb.embed(["a", "b", "c"])
    finally:
        shutdown_pools()


def test_hashing_and_single_core_configs_stay_in_process():
    assert not isinstance(pooled(make_embedder("hashing", dim=8), Settings.model_validate({"embedding": {"model": "hashing"}})),
                          PooledEmbedder)
    one = Settings.model_validate({"embedding": {"workers": 1}})
    assert not isinstance(pooled(make_embedder(MODEL, backend="torch"), one), PooledEmbedder)


def test_prefetched_texts_come_back_in_order_and_unasked_ones_are_dropped(fp32_vecs):
    s = Settings.model_validate({"embedding": {"backend": "torch", "workers": 2, "pool_min_texts": 8}})
    emb = pooled(make_embedder(MODEL, backend="torch"), s)
    try:
        emb.prefetch(TEXTS[:30])  # this batch
        emb.prefetch(TEXTS[30:60])  # the next one, guessed while this one encodes
        np.testing.assert_allclose(emb.embed(TEXTS[:30]), fp32_vecs[:30], atol=1e-5)
        assert set(emb._flight) <= set(TEXTS[30:60])  # the guess stays in flight for the next call
        # the next batch asks for part of the guess plus texts nobody guessed, in its own order
        ask = TEXTS[60:66] + TEXTS[45:30:-1]
        np.testing.assert_allclose(emb.embed(ask), np.concatenate([fp32_vecs[60:66], fp32_vecs[45:30:-1]]), atol=1e-5)
        assert not emb._flight  # the unasked rest of the guess (TEXTS[46:60]) is forgotten
        emb.prefetch(TEXTS[:20])
        shutdown_pools()  # a pool stopped with texts in flight: the next call starts fresh workers
        np.testing.assert_allclose(emb.embed(TEXTS[:20]), fp32_vecs[:20], atol=1e-5)
    finally:
        shutdown_pools()


def test_given_token_counts_order_the_slices_and_change_no_vector():
    """With `lengths` the pool cuts slices from texts sorted by them (what pads least in the
    workers), not by characters; a missing count falls back to characters for that job."""
    from indexops.embed.hashing import HashingEmbedder

    local = HashingEmbedder(16)
    spec = {"model": "hashing", "dim": 16, "batch_size": None, "device": "cpu", "normalize": True, "backend": "torch"}
    texts = ["a b c d e f", "gg hh ii", "jjj kkk", "llllllllll"]  # characters 11, 8, 7, 10
    tokens = [6, 3, 2, 1]
    pool = PooledEmbedder(local, spec, workers=2, min_texts=2, slice_size=2, cores=2)
    try:
        pool.prefetch(texts, lengths=tokens)
        slices = {t: id(pool._flight[t][0]) for t in texts}
        assert slices[texts[3]] == slices[texts[2]] != slices[texts[1]] == slices[texts[0]]
        np.testing.assert_allclose(pool.embed(texts, lengths=tokens), local.embed(texts), atol=1e-6)
        pool.prefetch(texts, lengths=[6, 3, None, 1])
        slices = {t: id(pool._flight[t][0]) for t in texts}
        assert slices[texts[2]] == slices[texts[1]] != slices[texts[3]] == slices[texts[0]]
        np.testing.assert_allclose(pool.embed(texts), local.embed(texts), atol=1e-6)
    finally:
        shutdown_pools()


def test_ingest_reads_the_next_unit_while_one_encodes_and_stores_the_right_vectors(tmp_path, fp32_vecs):
    import json

    from indexops.ingest.driver import ingest_path

    feed = tmp_path / "feed"
    feed.mkdir()
    docs = [{"id": f"d{i}", "title": "", "text": t} for i, t in enumerate(TEXTS)]
    for k in range(3):  # three batch files: each one's look-ahead chunks the next and queues its texts
        (feed / f"{k:06d}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[k * 24 : (k + 1) * 24]))
    s = Settings.model_validate({"embedding": {"backend": "torch", "workers": 2, "pool_min_texts": 8},
                                 "chunking": {"strategy": "document"}, "dedupe": {"near": False, "exact": False}})
    ctx = open_index(tmp_path / "ws", s)
    try:
        r = ingest_path(ctx, feed, "delta")
        assert r["counts"]["chunks_embedded"] == len(TEXTS) and r["timings_s"]["ahead"] > 0
        assert not ctx.embedder._flight
        rows = ctx.ledger.chunks_for_docs(ctx.collection, [d["id"] for d in docs])
        got = {p["payload"]["doc_id"]: p["dense"] for p in ctx.store.retrieve([rows[d["id"]][0].point_id for d in docs], with_vectors=True)}
        np.testing.assert_allclose(np.array([got[d["id"]] for d in docs]), fp32_vecs, atol=1e-5)
    finally:
        ctx.close()
        shutdown_pools()
