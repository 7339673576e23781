"""A deterministic synthetic corpus for scale benchmarks: Zipf-distributed words (as real text),
log-normal document lengths, planted exact and near duplicates. Document i is the same whatever
the corpus size (blocks of documents are seeded by their block number), so a 1,000-document
delta is the same change at 10k, 100k and 1M documents.

    python bench/synth_corpus.py --docs 100000 --out /tmp/corpus-100k   # delta feed of JSONL files
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

VOCAB = 50_000
BLOCK = 1_000  # documents per seeded block
DUP_EVERY = 100  # every 100th document repeats an earlier text exactly (1%)
NEAR_EVERY = 97  # every 97th document is an earlier one with ~5% of its words changed (~1%)
_SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "va", "shi", "qu", "ze", "bo", "an", "el", "or", "ix"]


def _word(rank: int) -> str:
    """A pronounceable pseudo-word per frequency rank (rank 0 is the most frequent)."""
    out, n = [], rank + 1
    while n:
        n, r = divmod(n, len(_SYLLABLES))
        out.append(_SYLLABLES[r])
    return "".join(out)


_WORDS = np.array([_word(r) for r in range(VOCAB)], dtype=object)
_P = 1.0 / np.arange(1, VOCAB + 1) ** 1.07
_P /= _P.sum()
_CDF = np.cumsum(_P)


def _words(rng: np.random.Generator, n: int) -> list[str]:
    return list(_WORDS[np.searchsorted(_CDF, rng.random(n))])


def _base_text(i: int) -> str:
    rng = np.random.default_rng([i // BLOCK, i % BLOCK, 7])
    n = int(np.clip(rng.lognormal(mean=4.6, sigma=0.5), 20, 800))  # median ~100 words
    words = _words(rng, n)
    # sentences of 8-20 words so the recursive chunker has boundaries to use
    out, k = [], 0
    while k < len(words):
        m = int(rng.integers(8, 21))
        out.append(" ".join(words[k : k + m]).capitalize() + ".")
        k += m
    return " ".join(out)


def document(i: int, version: int = 1) -> dict:
    """Document i (version > 1: its text edited, as a delta would carry)."""
    if i > 0 and i % DUP_EVERY == 0:
        text = _base_text(i // 2)  # exact duplicate of an earlier document
    elif i > 0 and i % NEAR_EVERY == 0:
        words = _base_text(i // 3).split(" ")
        rng = np.random.default_rng([i, 11])
        for j in rng.choice(len(words), size=max(1, len(words) // 20), replace=False):
            words[j] = _word(int(rng.integers(0, VOCAB)))
        text = " ".join(words)
    else:
        text = _base_text(i)
    if version > 1:
        rng = np.random.default_rng([i, version, 13])
        text = text + " " + " ".join(_words(rng, 25)).capitalize() + "."
    return {"id": f"syn-{i:08d}", "title": f"Synthetic {i}", "text": text}


def corpus(n: int) -> Iterator[dict]:
    for i in range(n):
        yield document(i)


def delta(n_corpus: int, size: int = 1_000, seed: int = 5, new_from: int = 0) -> list[dict]:
    """A delta of `size` records against a corpus of `n_corpus`: 50% updates, 30% new, 20% deletes.
    New documents take ids from n_corpus + new_from, so successive deltas add distinct documents."""
    rng = np.random.default_rng(seed)
    n_upd, n_new = size // 2, size * 3 // 10
    n_del = size - n_upd - n_new
    # the same ids at every corpus size: drawn from the first 10,000 documents
    picked = rng.choice(min(n_corpus, 10_000), size=n_upd + n_del, replace=False)
    recs = [document(int(i), version=2) for i in picked[:n_upd]]
    recs += [document(n_corpus + new_from + k) for k in range(n_new)]
    recs += [{"id": f"syn-{int(i):08d}", "op": "delete"} for i in picked[n_upd:]]
    return recs


def write_feed(out: Path, n: int, per_file: int = 50_000) -> list[Path]:
    """Write the corpus as delta files `000001-base.jsonl`, ... of `per_file` documents."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    it = corpus(n)
    for k in range((n + per_file - 1) // per_file):
        p = out / f"{k + 1:06d}-base.jsonl"
        with open(p, "w", encoding="utf-8") as f:
            for _ in range(min(per_file, n - k * per_file)):
                f.write(json.dumps(next(it)) + "\n")
        files.append(p)
    return files


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    print(f"wrote {len(write_feed(a.out, a.docs))} file(s) to {a.out}")
