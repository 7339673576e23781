"""Retrievers over a snapshot: `bm25` (Okapi reference over the snapshot's chunks), `sparse`
(Qdrant BM25 + IDF), `dense` (Qdrant HNSW), `hybrid` (RRF of dense + sparse, `store/fusion.py`).

Chunk hits aggregate to documents by max, because judgements are per document. One function,
`ranked_documents`, makes the ranking: a RAG app's `search` serves it and eval scores it as given
(ties included), and every answer names the snapshot and recipe it came from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from indexops.index.context import IndexContext, recipe_hash
from indexops.index.snapshot import served_snapshot_id
from indexops.store.fusion import TIE_BREAK, by_score
from indexops.store.protocol import Hit

RETRIEVERS = ("bm25", "sparse", "dense", "hybrid")
Run = dict[str, dict[str, float]]


class Retriever(Protocol):
    name: str

    def retrieve(self, queries: dict[str, str], k: int) -> Run: ...

    def config(self) -> dict[str, Any]: ...


def best_per_document(hits: Sequence[Hit], k: int) -> list[Hit]:
    """The first (best) hit of each document in `hits`' order, which must be final; top k."""
    seen: set[str] = set()
    out: list[Hit] = []
    for h in hits:
        d = h.payload.get("doc_id")
        if d is None or d in seen:
            continue
        seen.add(d)
        out.append(h)
        if len(out) >= k:
            break
    return out


def aggregate_max(hits: Sequence[Hit], k: int) -> dict[str, float]:
    """Document score = best chunk score; top k documents, best first (ties: point id, doc id)."""
    ranked = sorted(hits, key=lambda h: (-h.score, h.point_id, str(h.payload.get("doc_id"))))
    return {h.payload["doc_id"]: h.score for h in best_per_document(ranked, k)}


def chunk_hits(ctx: IndexContext, name: str, text: str, vector: Sequence[float] | None, limit: int) -> list[Hit]:
    """One query's chunk-level hits from the store, `sparse`, `dense` or `hybrid` (RRF), in a total
    order: score descending, then point id (hybrid: `fusion.rrf`'s tie-break)."""
    if name == "sparse":
        return by_score(ctx.store.search_sparse(ctx.bm25.query(text), limit))
    assert vector is not None, f"{name} needs the query vector"
    if name == "dense":
        return by_score(ctx.store.search_dense(vector, limit))
    r = ctx.settings.retrieval
    weights = None if r.dense_weight == r.sparse_weight else [r.dense_weight, r.sparse_weight]
    # the arms' depth never follows `limit`: every k then reads a prefix of one fused ranking, so eval
    # at k = 100 scores the order `search` serves at k = 10 (it returns fewer when the arms hold fewer)
    return ctx.store.search_hybrid(vector, ctx.bm25.query(text), limit, prefetch=r.prefetch, rrf_k=r.rrf_k, weights=weights)


def ranked_documents(ctx: IndexContext, name: str, text: str, vector: Sequence[float] | None, k: int) -> list[Hit]:
    """The top k documents for one query (each as its best chunk), best first: what `search`
    serves and what eval scores, in this order."""
    return best_per_document(chunk_hits(ctx, name, text, vector, k * ctx.settings.retrieval.chunk_fanout), k)


def _as_run(hits: Sequence[Hit]) -> dict[str, float]:
    return {h.payload["doc_id"]: h.score for h in hits}  # keeps the ranked order: metrics read it as given


class SparseRetriever:
    name = "sparse"

    def __init__(self, ctx: IndexContext) -> None:
        self.ctx = ctx

    def config(self) -> dict[str, Any]:
        return {"retriever": self.name, "bm25": self.ctx.bm25.recipe(), "chunk_fanout": self.ctx.settings.retrieval.chunk_fanout}

    def retrieve(self, queries: dict[str, str], k: int) -> Run:
        return {q: _as_run(ranked_documents(self.ctx, self.name, t, None, k)) for q, t in queries.items()}


class DenseRetriever:
    name = "dense"

    def __init__(self, ctx: IndexContext) -> None:
        self.ctx = ctx

    def config(self) -> dict[str, Any]:
        return {"retriever": self.name, "model": self.ctx.recipe["embedding"], "chunk_fanout": self.ctx.settings.retrieval.chunk_fanout}

    def _vectors(self, queries: dict[str, str]) -> dict[str, np.ndarray]:
        ids = list(queries)
        vecs = self.ctx.embedder.embed([queries[q] for q in ids])
        return dict(zip(ids, vecs))

    def retrieve(self, queries: dict[str, str], k: int) -> Run:
        vecs = self._vectors(queries)
        return {q: _as_run(ranked_documents(self.ctx, self.name, t, vecs[q].tolist(), k)) for q, t in queries.items()}


class HybridRetriever(DenseRetriever):
    name = "hybrid"

    def config(self) -> dict[str, Any]:
        r = self.ctx.settings.retrieval
        return {"retriever": self.name, "fusion": "rrf", "tie_break": TIE_BREAK, "rrf_k": r.rrf_k, "prefetch": r.prefetch,
                "weights": [r.dense_weight, r.sparse_weight], "model": self.ctx.recipe["embedding"],
                "bm25": self.ctx.bm25.recipe(), "chunk_fanout": r.chunk_fanout}


class Bm25Reference:
    """Okapi BM25 (rank-bm25's formula, exact sparse-matrix scorer) over the snapshot's chunk texts."""

    name = "bm25"

    def __init__(self, ctx: IndexContext) -> None:
        from indexops.eval.analysis import Analyzer
        from indexops.eval.bm25_exact import FastBM25Okapi

        self.ctx = ctx
        self.analyze = Analyzer()
        s = ctx.settings.bm25
        self.doc_ids: list[str] = []
        corpus: list[list[str]] = []
        include_title = ctx.settings.chunking.include_title
        for _pid, p in ctx.store.iter_points(["doc_id", "title", "text"]):
            t = p.get("text") or ""
            title = p.get("title") or ""
            self.doc_ids.append(p["doc_id"])
            corpus.append(self.analyze(f"{title}\n{t}" if include_title and title else t))
        self.index = FastBM25Okapi(corpus, k1=s.k1, b=s.b)
        self.doc_arr = np.asarray(self.doc_ids, dtype=object)

    def config(self) -> dict[str, Any]:
        s = self.ctx.settings.bm25
        return {"retriever": self.name, "impl": "okapi (rank-bm25 formula)", "k1": s.k1, "b": s.b, "analyser": "word/lower/stop/snowball-english"}

    def retrieve(self, queries: dict[str, str], k: int) -> Run:
        out: Run = {}
        fan = k * self.ctx.settings.retrieval.chunk_fanout
        for q, t in queries.items():
            scores = self.index.get_scores(self.analyze(t))
            if not len(scores):
                out[q] = {}
                continue
            n = min(fan, len(scores))
            top = np.argpartition(-scores, n - 1)[:n]
            hits = [Hit("", float(scores[i]), {"doc_id": self.doc_ids[i]}) for i in top if scores[i] > 0]
            out[q] = aggregate_max(hits, k)
        return out


def make_retriever(ctx: IndexContext, name: str) -> Retriever:
    if name == "sparse":
        return SparseRetriever(ctx)
    if name == "dense":
        return DenseRetriever(ctx)
    if name == "hybrid":
        return HybridRetriever(ctx)
    if name == "bm25":
        return Bm25Reference(ctx)
    raise ValueError(f"unknown retriever {name!r}; choose one of {', '.join(RETRIEVERS)}")


@dataclass
class SearchAnswer:
    """A RAG app's answer: hits plus exactly which index produced them."""

    query: str
    retriever: str
    snapshot_id: str
    collection: str
    recipe_hash: str
    hits: list[dict[str, Any]] = field(default_factory=list)
    took_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def search(ctx: IndexContext, text: str, retriever: str | None = None, k: int = 10) -> SearchAnswer:
    """Search the index as a RAG app would; chunk-level hits carry doc id, text and score."""
    name = retriever or ctx.settings.retrieval.default
    t0 = time.perf_counter()
    if name == "bm25":
        run = Bm25Reference(ctx).retrieve({"q": text}, k)["q"]
        hits = [{"doc_id": d, "score": s} for d, s in run.items()]
    else:
        vec = None if name == "sparse" else ctx.embedder.embed([text])[0].tolist()
        hits = [{"doc_id": h.payload.get("doc_id"), "score": h.score, "chunk_id": h.payload.get("chunk_id"),
                 "title": h.payload.get("title"), "text": h.payload.get("text")} for h in ranked_documents(ctx, name, text, vec, k)]
    return SearchAnswer(
        query=text, retriever=name, snapshot_id=served_snapshot_id(ctx), collection=ctx.collection,
        recipe_hash=recipe_hash(ctx.recipe), hits=hits, took_ms=(time.perf_counter() - t0) * 1000,
    )
