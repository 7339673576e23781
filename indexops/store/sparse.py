"""BM25 sparse vectors from Qdrant's own analyser (tokeniser, stemmer, stop words).

Document vectors carry the BM25 term-frequency part; the store applies IDF (`Modifier.IDF`),
so adding documents never requires re-weighting the ones already stored.
"""

from __future__ import annotations

from functools import lru_cache

from indexops.settings import Bm25Settings


@lru_cache(maxsize=8)
def _model(k1: float, b: float, avg_len: float, language: str):
    from qdrant_edge import Bm25, Bm25Config

    return Bm25(Bm25Config(k=k1, b=b, avg_len=avg_len, language=language))


class Bm25Encoder:
    def __init__(self, settings: Bm25Settings) -> None:
        self.settings = settings
        self._m = _model(settings.k1, settings.b, settings.avg_len, settings.language)

    def document(self, text: str) -> tuple[list[int], list[float]]:
        v = self._m.embed_document(text)
        return list(v.indices), list(v.values)

    def query(self, text: str) -> tuple[list[int], list[float]]:
        v = self._m.embed_query(text)
        return list(v.indices), list(v.values)

    def recipe(self) -> dict:
        return {**self.settings.model_dump(), "analyser": "qdrant-edge Bm25", "modifier": "idf"}
