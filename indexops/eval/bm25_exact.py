"""Okapi BM25 exactly as rank-bm25's `BM25Okapi` scores it, as one sparse matrix product.

rank-bm25 scores every query term against every document in Python; this precomputes the
per-(document, term) weights once, so a query costs one sparse dot product. A parity test holds
it to rank-bm25 on the same corpus and analyser.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


class FastBM25Okapi:
    """Same parameters and IDF floor (epsilon * mean IDF for negative IDFs) as `rank_bm25.BM25Okapi`."""

    def __init__(self, corpus: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        from scipy.sparse import csr_matrix

        self.k1, self.b, self.epsilon = k1, b, epsilon
        n = len(corpus)
        self.vocab: dict[str, int] = {}
        df: Counter[str] = Counter()
        rows, cols, tfs = [], [], []
        lens = np.zeros(n, dtype=np.float64)
        for i, doc in enumerate(corpus):
            lens[i] = len(doc)
            c = Counter(doc)
            df.update(c.keys())
            for t, f in c.items():
                j = self.vocab.setdefault(t, len(self.vocab))
                rows.append(i)
                cols.append(j)
                tfs.append(f)
        avgdl = float(lens.sum() / n) if n else 0.0
        idf = np.zeros(len(self.vocab), dtype=np.float64)
        negative = []
        total = 0.0
        for t, j in self.vocab.items():
            v = math.log(n - df[t] + 0.5) - math.log(df[t] + 0.5)
            idf[j] = v
            total += v
            if v < 0:
                negative.append(j)
        if self.vocab:
            eps = epsilon * (total / len(self.vocab))
            idf[negative] = eps
        tf = np.asarray(tfs, dtype=np.float64)
        r = np.asarray(rows, dtype=np.int64)
        denom = tf + k1 * (1 - b + b * lens[r] / avgdl) if n else tf
        w = idf[np.asarray(cols, dtype=np.int64)] * (tf * (k1 + 1) / denom)
        self.matrix = csr_matrix((w, (r, np.asarray(cols, dtype=np.int64))), shape=(n, len(self.vocab)))
        self.idf = idf

    def get_scores(self, query: Sequence[str]) -> np.ndarray:
        q = np.zeros(len(self.vocab), dtype=np.float64)
        for t in query:  # repeated query terms count again, as in rank-bm25
            j = self.vocab.get(t)
            if j is not None:
                q[j] += 1.0
        return np.asarray(self.matrix @ q).ravel()
