"""Optional embedder and tokenizer capabilities are Protocols: the encoder pool, batched
tokenizing, token ids for chunks, the exported model file and encoding from token ids."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from indexops.embed.hashing import HashingEmbedder, WordTokenizer
from indexops.embed.onnx import OnnxEmbedder
from indexops.embed.pool import PooledEmbedder
from indexops.embed.protocol import BatchTokenizer, EmbedsTokenIds, EncoderPool, ExportsModelFile, HFTokenizer, TokenIdTokenizer
from indexops.index.context import IndexContext
from indexops.ingest.chunking import Chunker
from indexops.settings import ChunkingSettings


def test_the_real_classes_declare_their_capabilities():
    assert issubclass(PooledEmbedder, EncoderPool) and not issubclass(HashingEmbedder, EncoderPool)
    assert issubclass(OnnxEmbedder, ExportsModelFile) and issubclass(OnnxEmbedder, EmbedsTokenIds)
    assert not issubclass(HashingEmbedder, ExportsModelFile) and not issubclass(HashingEmbedder, EmbedsTokenIds)
    assert issubclass(HFTokenizer, BatchTokenizer) and not issubclass(WordTokenizer, BatchTokenizer)
    assert not isinstance(WordTokenizer(), TokenIdTokenizer)


def test_the_context_offers_a_pool_only_for_an_embedder_that_queues_ahead():
    pool = IndexContext.pool.fget  # type: ignore[attr-defined]
    assert pool(SimpleNamespace(embedder=HashingEmbedder(8))) is None

    class Queues:
        def prefetch(self, texts, lengths=None, ids=None) -> None: ...
        def embed(self, texts, progress=None, lengths=None, ids=None) -> np.ndarray: ...

    q = Queues()
    assert pool(SimpleNamespace(embedder=q)) is q


class _IdTokenizer(WordTokenizer):
    """Word tokens with ids (each word's length) and a warm-up call, as the model's tokenizer has."""

    id_dtype = "<u2"

    def __init__(self, continues) -> None:
        super().__init__(64)
        self.continues = continues
        self.warmed: list[str] = []

    def warm(self, texts) -> None:
        self.warmed.extend(texts)

    def spans_ids(self, text):
        spans = self.spans(text)
        return spans, np.asarray([b - a for a, b in spans], dtype=self.id_dtype)


def _chunker(tok) -> Chunker:
    return Chunker(ChunkingSettings(strategy="token_window", max_tokens=32, overlap_tokens=0, include_title=False), tok, "t")


def test_chunks_carry_token_ids_only_from_a_tokenizer_that_has_exact_ids():
    with_ids = _chunker(_IdTokenizer(continues=np.zeros(100, dtype=bool)))
    [c] = with_ids.chunk("d", "", "one two three", {}).chunks
    assert c.token_ids is not None and np.frombuffer(c.token_ids, dtype="<u2").tolist() == [3, 3, 5]
    for tok in (WordTokenizer(64), _IdTokenizer(continues=None)):  # no ids at all; ids that are not word-aligned
        [c] = _chunker(tok).chunk("d", "", "one two three", {}).chunks
        assert c.token_ids is None


def test_only_a_batch_tokenizer_is_warmed():
    tok = _IdTokenizer(continues=None)
    _chunker(tok).warm(["a b", "c"])
    assert tok.warmed == ["a b", "c"]
    _chunker(WordTokenizer(64)).warm(["a b"])  # nothing to call: no error
