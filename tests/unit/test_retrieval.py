"""Retrievers: the exact fast BM25 equals rank-bm25; Qdrant's sparse BM25 holds to the reference;
chunk hits aggregate to documents by max; eval scores exactly the order `search` serves, tied
scores included; answers name their snapshot."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from indexops.eval.analysis import Analyzer
from indexops.eval.bm25_exact import FastBM25Okapi
from indexops.eval.evaluate import evaluate_snapshot
from indexops.eval.queries import QuerySet, beir_split
from indexops.eval.retrieval import aggregate_max, make_retriever, search
from indexops.ingest.driver import ingest_path
from indexops.store.protocol import Hit
from tests.conftest import REPO

MINI = REPO / "tests" / "data" / "mini_beir"


def test_fast_bm25_equals_rank_bm25_on_every_document():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(60)]
    corpus = [[rng.choice(vocab[: rng.randint(5, 60)]) for _ in range(rng.randint(1, 40))] for _ in range(200)]
    ref = BM25Okapi(corpus, k1=1.2, b=0.75)
    fast = FastBM25Okapi(corpus, k1=1.2, b=0.75)
    for _ in range(30):
        q = [rng.choice(vocab) for _ in range(rng.randint(1, 6))] + ["unknown-term"]
        np.testing.assert_allclose(fast.get_scores(q), ref.get_scores(q), rtol=1e-9, atol=1e-9)


def test_fast_bm25_applies_the_negative_idf_floor_like_rank_bm25():
    corpus = [["common", "a"], ["common", "b"], ["common", "c"]]  # 'common' has a negative Okapi IDF
    np.testing.assert_allclose(FastBM25Okapi(corpus).get_scores(["common"]), BM25Okapi(corpus).get_scores(["common"]))


def test_analyzer_lowercases_drops_stopwords_and_stems():
    assert Analyzer()("The Running dogs, and THE cats!") == ["run", "dog", "cat"]


def test_aggregate_max_keeps_best_chunk_per_document():
    hits = [Hit("1", 0.9, {"doc_id": "a"}), Hit("2", 0.95, {"doc_id": "b"}), Hit("3", 0.99, {"doc_id": "a"}), Hit("4", 0.1, {"doc_id": "c"})]
    assert aggregate_max(hits, 2) == {"a": 0.99, "b": 0.95}


@pytest.fixture
def mini_ctx(make_ctx, hashing_settings):
    ctx = make_ctx(hashing_settings.model_copy(update={"dedupe": hashing_settings.dedupe.model_copy(update={"near": False})}))
    ingest_path(ctx, MINI, "beir")
    return ctx


def test_qdrant_sparse_bm25_holds_to_the_okapi_reference(mini_ctx):
    qs = beir_split(MINI, "test")
    m = ["ndcg@10", "recall@10"]
    ref = evaluate_snapshot(mini_ctx, qs, "bm25", m, store=False).metrics
    qd = evaluate_snapshot(mini_ctx, qs, "sparse", m, store=False).metrics
    assert abs(ref["ndcg@10"] - qd["ndcg@10"]) < 0.05, (ref, qd)
    # and both are far from chance: topic words find the topic's documents
    run = make_retriever(mini_ctx, "sparse").retrieve(qs.queries, 10)
    on_topic = [sum(d.split("-")[0] == q.split("-")[0] for d in docs) / max(len(docs), 1) for q, docs in run.items()]
    assert np.mean(on_topic) > 0.8


@pytest.mark.parametrize("name", ["bm25", "sparse", "dense", "hybrid"])
def test_every_retriever_returns_k_ranked_documents(mini_ctx, name):
    qs = beir_split(MINI, "test")
    run = make_retriever(mini_ctx, name).retrieve(dict(list(qs.queries.items())[:3]), 5)
    for docs in run.values():
        assert 0 < len(docs) <= 5
        scores = list(docs.values())
        assert scores == sorted(scores, reverse=True)


def test_evaluated_order_is_the_order_search_serves_ties_included(mini_ctx):
    """For every query and store retriever: the run eval scores lists the documents `search` returns,
    in its order, and the metrics read that order (no re-sort by score and doc id). The hashing
    embedder's bag-of-words vectors make tied RRF scores frequent here; the hybrid case must have some.
    (`bm25`'s `search` is its retriever's run, so it is the same by construction.)"""
    from indexops.eval import metrics as M

    qs = beir_split(MINI, "test")
    k = 10
    for name in ("sparse", "dense", "hybrid"):
        out = evaluate_snapshot(mini_ctx, qs, name, ["ndcg@10"], store=False)
        run = make_retriever(mini_ctx, name).retrieve(qs.queries, k)
        tied = 0
        for q, text in qs.queries.items():
            hits = search(mini_ctx, text, name, k).hits
            served = [h["doc_id"] for h in hits]
            assert list(run[q]) == served, (name, q)
            assert list(out.run[q])[:k] == served, (name, q)
            scores = [h["score"] for h in hits]
            tied += sum(1 for a, b in zip(scores, scores[1:]) if a == b)
            if q in out.per_query:
                rels = {d: g for d, g in qs.qrels[q].items() if g > 0}
                assert out.per_query[q]["ndcg@10"] == pytest.approx(M._ndcg(served, rels, k), abs=1e-12), (name, q)
        if name == "hybrid":
            assert tied >= 3, "no tied fused scores: the fixture no longer exercises the tie-break"


def test_hybrid_ranking_does_not_depend_on_k(mini_ctx):
    """Every k reads a prefix of one fused ranking (the arms' depth is `prefetch`, whatever k asks
    for), so the top 10 eval scores at k = 100 is what `search` serves at k = 3 or 10."""
    mini_ctx.settings.retrieval.prefetch = 8  # shallow arms, so a depth that followed k would show
    texts = list(beir_split(MINI, "test").queries.values())
    for text in texts:
        deep = [h["doc_id"] for h in search(mini_ctx, text, "hybrid", k=40).hits]
        assert [h["doc_id"] for h in search(mini_ctx, text, "hybrid", k=3).hits] == deep[:3]
        assert [h["doc_id"] for h in search(mini_ctx, text, "hybrid", k=10).hits] == deep[:10]
    assert all(len(search(mini_ctx, t, "hybrid", k=40).hits) <= 16 for t in texts)


def test_search_answer_names_snapshot_and_recipe(mini_ctx):
    from indexops.index.snapshot import current_snapshot_id

    ans = search(mini_ctx, "insulin glucose diabetes", "hybrid", k=3)
    assert ans.snapshot_id == current_snapshot_id(mini_ctx.ledger, mini_ctx.collection)
    assert len(ans.recipe_hash) == 64 and ans.collection == mini_ctx.collection
    assert len(ans.hits) == 3 and ans.hits[0]["doc_id"].startswith("endo")
    assert json.dumps(ans.to_dict())


def test_eval_run_is_stored_with_its_recipe(mini_ctx):
    qs = QuerySet(name="t", queries={"q": "insulin glucose"}, qrels={"q": {"endo-0": 1}})
    o = evaluate_snapshot(mini_ctx, qs, "sparse", ["recall@10", "ndcg@10"])
    stored = mini_ctx.ledger.get_eval(o.eval_id)
    assert stored["snapshot_id"] == o.snapshot_id and stored["query_set_hash"] == qs.hash
    assert {"model_fingerprint", "retriever", "code_version", "query_set"} <= set(stored["recipe"])
    assert "recall" in stored["metrics"]["definitions"]
    per_query, rankings = mini_ctx.ledger.eval_queries(o.eval_id)
    assert set(per_query["q"]) == {"recall@10", "ndcg@10"} and rankings["q"]
