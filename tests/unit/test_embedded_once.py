""""Only new or changed chunks are embedded, each distinct text once", counted at the embedder
(every text that reaches `embed`, every model load), not by the pipeline's own counters."""

from __future__ import annotations

from collections import Counter

import pytest

from indexops.embed.hashing import HashingEmbedder
from indexops.embed.onnx import OnnxEmbedder
from indexops.embed.torch import SentenceTransformerEmbedder
from indexops.index.context import open_index
from indexops.ingest.driver import ingest_path
from indexops.ingest.stages import apply_batch
from indexops.settings import load_settings
from tests.conftest import write_jsonl
from tests.unit._helpers import settings_for, up

SMALL = {"chunking": {"strategy": "recursive", "max_tokens": 9, "overlap_tokens": 0, "include_title": False}}
P3 = "alpha beta gamma delta. epsilon zeta eta theta. iota kappa lambda mu."  # chunks [s1 s2] and [s3]


class CountingEmbedder:
    """The hashing embedder, recording the texts of every `embed` call."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []
        self.dim = inner.dim

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def tokenizer(self):
        return self.inner.tokenizer()

    def embed(self, texts, progress=None):
        self.calls.append(list(texts))
        return self.inner.embed(texts, progress=progress)

    def texts(self) -> Counter:
        return Counter(t for call in self.calls for t in call)


@pytest.fixture
def counted(make_ctx):
    def _make(overrides=None):
        ctx = make_ctx(settings_for({**SMALL, **(overrides or {})}))
        ctx.embedder = CountingEmbedder(ctx.embedder)
        return ctx, ctx.embedder

    return _make


def _chunk_texts(ctx, doc_id):
    return {v["text"] for _, v in ctx.store.iter_points(["doc_id", "text"]) if v["doc_id"] == doc_id}


def test_identical_texts_in_a_batch_are_encoded_once(counted):
    ctx, emb = counted({"dedupe": {"exact": False, "near": False}})  # two live documents with the same text
    apply_batch(ctx, [up("p", P3), up("q", P3), up("r", "alpha beta gamma delta. epsilon zeta eta theta. other words here")], "f", "r1")
    seen = emb.texts()
    assert seen and max(seen.values()) == 1, seen  # [s1 s2] is in all three documents
    assert set(seen) == _chunk_texts(ctx, "p") | _chunk_texts(ctx, "r")


def test_metadata_only_change_and_resent_batch_encode_nothing(counted):
    ctx, emb = counted()
    apply_batch(ctx, [up("p", P3, metadata={"v": 1})], "f", "r1")
    assert len(emb.calls) == 1
    apply_batch(ctx, [up("p", P3, metadata={"v": 2})], "f", "r2")
    apply_batch(ctx, [up("p", P3, metadata={"v": 2})], "f", "r3")
    assert len(emb.calls) == 1


def test_only_the_changed_chunk_is_encoded(counted):
    ctx, emb = counted()
    apply_batch(ctx, [up("p", P3), up("q", "other words entirely here")], "f", "r1")
    before = _chunk_texts(ctx, "p")
    emb.calls.clear()
    apply_batch(ctx, [up("p", P3.replace("lambda mu.", "lambda NU.")), up("q", "other words entirely here")], "f", "r2")
    new = _chunk_texts(ctx, "p") - before
    assert len(new) == 1 and emb.texts() == Counter(new)  # p's second chunk; not p's first, not q


def test_a_no_op_run_never_loads_the_model(tmp_path, monkeypatch):
    """The default config (the real model): a re-run with nothing pending and a re-sent batch of
    unchanged records load no model (no torch model, no ONNX export or session)."""
    settings = load_settings(None, overrides={"embedding": {"workers": 1}})
    feed = write_jsonl(tmp_path / "feed" / "000001-a.jsonl", [{"id": f"d{i}", "text": f"text number {i} about rivers"} for i in range(3)]).parent
    first = open_index(tmp_path / "ws", settings)
    fake = HashingEmbedder(dim=first.embedder.dim)
    monkeypatch.setattr(first.embedder, "embed", lambda texts, progress=None: fake.embed(texts))  # no model for the first run either
    try:
        assert ingest_path(first, feed, "delta")["counts"]["chunks_embedded"] == 3
    finally:
        first.close()

    loads: list[str] = []

    def _no_load(name):
        def _f(self, *a, **k):
            loads.append(name)
            raise AssertionError(f"{name} called on a no-op run")
        return _f

    monkeypatch.setattr(SentenceTransformerEmbedder, "_load", _no_load("torch model load"))
    monkeypatch.setattr(OnnxEmbedder, "_load", _no_load("onnx session"))
    monkeypatch.setattr(OnnxEmbedder, "model_path", _no_load("onnx export"))
    ctx = open_index(tmp_path / "ws", settings)
    try:
        again = ingest_path(ctx, feed, "delta")
        assert again["counts"]["received"] == 0 and again["files"] == []
        c = apply_batch(ctx, [up(f"d{i}", f"text number {i} about rivers") for i in range(3)], "feed", "resent")
        assert (c.unchanged, c.chunks_embedded) == (3, 0)
    finally:
        ctx.close()
    assert loads == []
