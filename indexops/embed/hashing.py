"""The hashing embedder: deterministic feature-hashing vectors and Unicode word tokens, no model."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from indexops.embed.protocol import ProgressFn, Tokenizer

_WORD = re.compile(r"\w+", re.UNICODE)


class WordTokenizer:
    """Unicode word tokens; the hashing embedder's tokenizer."""

    def __init__(self, max_tokens: int = 512) -> None:
        self.max_tokens = max_tokens

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]


class HashingEmbedder:
    """Deterministic feature-hashing vectors: stable across processes, no model, lexical similarity.

    Each lower-cased word adds +-1 at a position chosen by blake2b; the sum is L2-normalised.
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.model_id = f"hashing-{dim}"

    def fingerprint(self) -> str:
        return hashlib.sha256(f"hashing-embedder-v1:{self.dim}".encode()).hexdigest()

    def tokenizer(self) -> Tokenizer:
        return WordTokenizer()

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in _WORD.findall(text.lower()):
            d = hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            n = int.from_bytes(d, "little")
            v[n % self.dim] += 1.0 if (n >> 63) & 1 else -1.0
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            v[0] = 1.0
            return v
        return v / norm

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self._vector(t)
            if progress and (i + 1) % 1000 == 0:
                progress(i + 1, len(texts))
        if progress:
            progress(len(texts), len(texts))
        return out
