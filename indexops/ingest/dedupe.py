"""Exact and near-duplicate detection that works incrementally against the whole index.

Near duplicates use MinHash over word shingles with LSH banding. The band buckets of every
active document live in the ledger, so a new batch is checked with indexed lookups of its own
buckets: nothing is rebuilt and the cost is O(batch), not O(corpus).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from itertools import accumulate

import numpy as np

from indexops.ids import normalize_text
from indexops.settings import DedupeSettings

_SEED = 1
_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_COLUMNS_PER_PASS = 2048  # shingles per numpy pass: 128 x 2048 uint64 is 2 MiB


@lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows): the most selective banding that still finds a pair at `threshold` with
    probability >= `recall`. Candidates are verified by their estimated Jaccard afterwards, so a
    false positive costs a comparison while a false negative is a missed duplicate."""
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if b < 1:
            break
        if 1.0 - (1.0 - threshold**r) ** b >= recall:
            best = (b, r)
    return best


@dataclass
class Signature:
    values: np.ndarray  # uint64, length num_perm

    def to_bytes(self) -> bytes:
        return self.values.astype("<u8").tobytes()

    @classmethod
    def from_bytes(cls, b: bytes) -> "Signature":
        return cls(np.frombuffer(b, dtype="<u8").copy())

    def jaccard(self, other: "Signature") -> float:
        if len(self.values) != len(other.values):
            return 0.0
        return float(np.mean(self.values == other.values))


class NearDuplicateIndex:
    """MinHash signatures and LSH bucket keys for a configuration."""

    def __init__(self, settings: DedupeSettings) -> None:
        self.settings = settings
        self.bands, self.rows = lsh_params(settings.near_threshold, settings.num_perm)
        rng = np.random.RandomState(_SEED)
        self._a = rng.randint(1, _PRIME, size=settings.num_perm, dtype=np.uint64)
        self._b = rng.randint(0, _PRIME, size=settings.num_perm, dtype=np.uint64)

    def shingles(self, text: str) -> list[bytes]:
        """The distinct runs of `shingle_words` words of the normalised text, as UTF-8 bytes."""
        return list(dict.fromkeys(self._runs(normalize_text(text))))

    def _runs(self, norm: str) -> list[bytes]:
        """Every run of `shingle_words` words of a normalised text, repeats included (a minimum does
        not care), cut from one encoding of the text: UTF-8 encodes code point by code point, so a
        slice equals the encoded join of its words."""
        words = norm.split(" ")
        n = self.settings.shingle_words
        data = norm.encode("utf-8", "surrogatepass")
        if len(words) <= n:
            return [data]
        sizes = map(len, words) if len(data) == len(norm) else (len(w.encode("utf-8", "surrogatepass")) for w in words)
        starts = list(accumulate((k + 1 for k in sizes), initial=0))  # word i spans starts[i] .. starts[i+1]-1
        return [data[a : b - 1] for a, b in zip(starts, starts[n:])]

    def signature(self, text: str) -> Signature:
        return self.signatures([text])[0]

    def signatures(self, texts: Sequence[str], normalized: bool = False) -> list[Signature]:
        """Classic MinHash per text: min over shingles of (a*h + b) mod 2^61-1, h a 32-bit shingle hash.

        Texts go through numpy together, a few thousand shingles per pass, instead of one small pass
        each. a*h + b wraps at 2^64 (as it always has: stored signatures depend on it); the reduction
        mod the Mersenne prime 2^61-1 is done with shifts and masks, which equals numpy's `%` bit for
        bit. `normalized`: the texts are `normalize_text` output already."""
        hashes = []
        for t in texts:
            runs = self._runs(t if normalized else normalize_text(t))
            hashes.append(np.frombuffer(b"".join([blake2b(r, digest_size=4).digest() for r in runs]), dtype="<u4"))
        out: list[Signature] = []
        # two buffers serve every pass (a text longer than a pass gets one of its own): a pass allocates
        # nothing large, so the heap does not keep a pass's worth of freed temporaries
        cap = len(self._a) * min(sum(map(len, hashes)), max(_COLUMNS_PER_PASS, max(map(len, hashes), default=0)))
        x, q = np.empty(cap, dtype=np.uint64), np.empty(cap, dtype=np.uint64)
        i = 0
        while i < len(hashes):
            j, cols = i, 0
            while j < len(hashes) and (j == i or cols + len(hashes[j]) <= _COLUMNS_PER_PASS):
                cols += len(hashes[j])
                j += 1
            hv = np.concatenate(hashes[i:j]).astype(np.uint64)
            xv, qv = x[: len(self._a) * cols].reshape(-1, cols), q[: len(self._a) * cols].reshape(-1, cols)
            with np.errstate(over="ignore"):
                np.multiply.outer(self._a, hv, out=xv)
                xv += self._b[:, None]
            np.right_shift(xv, np.uint64(61), out=qv)
            xv &= _PRIME
            xv += qv  # x = q*2^61 + r == q + r (mod 2^61-1), q <= 7
            np.subtract(xv, _PRIME, out=xv, where=xv >= _PRIME)
            xv &= _MAX_HASH
            starts = np.cumsum([0] + [len(h) for h in hashes[i : j - 1]])
            mins = np.minimum.reduceat(xv, starts, axis=1)
            out += [Signature(np.ascontiguousarray(mins[:, k])) for k in range(j - i)]
            i = j
        return out

    def buckets(self, sig: Signature) -> list[int]:
        """One key per band: its rows' hash as a 63-bit integer (a BIGINT in the ledger)."""
        raw, w = sig.values.astype("<u8").tobytes(), self.rows * 8
        return [band_key(hashlib.sha1(band.to_bytes(2, "big") + raw[band * w : (band + 1) * w]).digest()) for band in range(self.bands)]


def band_key(digest: bytes) -> int:
    """The first 63 bits of a band's SHA-1. Older ledgers stored the digest's 40 hex digits;
    `band_key(bytes.fromhex(old))` maps those rows onto the same keys. Two different bands share a
    key with probability 2^-63: a collision costs one extra Jaccard check, never a wrong match."""
    return int.from_bytes(digest[:8], "big") >> 1


class BatchBuckets:
    """In-memory LSH for documents kept earlier in the same batch (not in the ledger yet)."""

    def __init__(self) -> None:
        self._by_bucket: dict[int, set[str]] = {}
        self.signatures: dict[str, Signature] = {}

    def add(self, doc_id: str, sig: Signature, buckets: list[int]) -> None:
        self.signatures[doc_id] = sig
        for b in buckets:
            self._by_bucket.setdefault(b, set()).add(doc_id)

    def candidates(self, buckets: list[int]) -> set[str]:
        out: set[str] = set()
        for b in buckets:
            out |= self._by_bucket.get(b, set())
        return out
