"""Group the production queries the labeled set does not cover into a few topics, each named by
its top terms and shown with example queries, so an analyst knows which labels to write.

Clustering runs on the query embeddings *and* a TF-IDF of the query texts, each L2-normalised and
concatenated: with a real model the embedding half groups paraphrases that share no word; the
lexical half keeps topics apart when the embedder is not semantic (the hashing embedder of the
tests and quick demos) and is what the names are made of anyway. Agglomerative clustering (cosine,
average linkage) is deterministic; k is the best silhouette in 2..`max_topics`.

Texts are expected already redacted (the report's `Redactor`); placeholders such as `[email]`
never become topic terms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_PLACEHOLDER = re.compile(r"\[[a-z_]+\]")
_WORD = re.compile(r"[^\W\d_][\w'-]*[\w]|[^\W\d_]", re.UNICODE)
_EXTRA_STOP = {"please", "does", "doesn", "don", "can", "get", "want", "need", "way", "hi", "hello", "thanks", "reply"}


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | _EXTRA_STOP


def terms_of(text: str, stop: frozenset[str] | None = None) -> list[str]:
    """Lower-cased word terms of a query, without stop words and redaction placeholders."""
    stop = _stop_words() if stop is None else stop
    return [t for t in _WORD.findall(_PLACEHOLDER.sub(" ", text.lower())) if len(t) > 1 and t not in stop]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _features(texts: Sequence[str], vectors: np.ndarray | None, stop: frozenset[str]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    parts = []
    try:
        tf = TfidfVectorizer(analyzer=lambda t: terms_of(t, stop), sublinear_tf=True).fit_transform(texts).toarray()
        parts.append(_unit_rows(tf))
    except ValueError:  # no term at all (every query was only stop words)
        pass
    if vectors is not None and len(vectors) == len(texts) and vectors.ndim == 2 and vectors.shape[1] > 1:
        parts.append(_unit_rows(np.asarray(vectors, np.float64)))
    return np.hstack(parts) if parts else np.zeros((len(texts), 1))


def _cluster(x: np.ndarray, max_topics: int) -> np.ndarray:
    n = len(x)
    if n < 4 or max_topics < 2 or not np.any(x):
        return np.zeros(n, dtype=int)
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    best, best_s = np.zeros(n, dtype=int), 0.05  # below this no split is better than one topic
    for k in range(2, min(max_topics, n - 1) + 1):
        labels = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(x)
        if len(set(labels)) < 2:
            continue
        s = float(silhouette_score(x, labels, metric="cosine"))
        if s > best_s + 1e-9:
            best, best_s = labels, s
    return best


def _name(members: list[list[str]], rest: list[list[str]], n_terms: int) -> list[str]:
    """Terms frequent in the topic and rare elsewhere: topic document frequency times the smoothed
    log-ratio of the term's document rate in the topic versus everything else."""
    n_c, n_r = len(members), max(len(rest), 1)
    df_c: dict[str, int] = {}
    df_r: dict[str, int] = {}
    for ts in members:
        for t in set(ts):
            df_c[t] = df_c.get(t, 0) + 1
    for ts in rest:
        for t in set(ts):
            df_r[t] = df_r.get(t, 0) + 1
    scored = []
    for t, c in df_c.items():
        lr = math.log(((c + 0.5) / (n_c + 1)) / ((df_r.get(t, 0) + 0.5) / (n_r + 1)))
        if lr > 0:
            scored.append((-(c / n_c) * lr, -c, t))
    return [t for *_, t in sorted(scored)[:n_terms]]


def uncovered_topics(
    texts: Sequence[str],
    vectors: np.ndarray | None,
    covered: Sequence[bool],
    *,
    max_topics: int = 5,
    n_terms: int = 3,
    n_examples: int = 3,
) -> list[dict[str, Any]]:
    """Topics of the uncovered queries, largest first.

    Args:
        texts: Every recent production query (redacted), covered or not.
        vectors: Their embeddings (rows aligned with `texts`), or None to cluster on text alone.
        covered: Per query, whether a labeled query is close.
        max_topics: At most this many topics.
        n_terms: Terms naming each topic.
        n_examples: Example queries per topic (the most central first).

    Returns:
        `[{"topic", "terms", "queries", "share", "examples"}]`; `share` of all the queries given.

    Raises:
        ValueError: `texts` and `covered` differ in length.
    """
    if len(texts) != len(covered):
        raise ValueError(f"{len(texts)} texts but {len(covered)} coverage flags")
    idx = [i for i, c in enumerate(covered) if not c]
    if not idx:
        return []
    stop = _stop_words()
    vecs = None if vectors is None or len(vectors) != len(texts) else np.asarray(vectors)[idx]
    x = _features([texts[i] for i in idx], vecs, stop)
    labels = _cluster(x, max_topics)
    tokens = [terms_of(t, stop) for t in texts]
    covered_tokens = [tokens[i] for i, c in enumerate(covered) if c]
    out = []
    for lab in sorted(set(labels.tolist())):
        pos = [j for j, l in enumerate(labels) if l == lab]
        members = [idx[j] for j in pos]
        others = [idx[j] for j, l in enumerate(labels) if l != lab]
        terms = _name([tokens[i] for i in members], covered_tokens + [tokens[i] for i in others], n_terms)
        centre = x[pos].mean(axis=0)
        closeness = _unit_rows(x[pos]) @ (centre / (np.linalg.norm(centre) or 1.0))
        order = sorted(range(len(pos)), key=lambda j: (-round(float(closeness[j]), 9), texts[members[j]]))
        examples = list(dict.fromkeys(texts[members[j]] for j in order))[:n_examples]
        out.append({"topic": ", ".join(terms) or "(no distinctive term)", "terms": terms, "queries": len(members),
                    "share": round(len(members) / len(texts), 4), "examples": examples})
    out.sort(key=lambda t: (-t["queries"], t["topic"]))
    return out[:max_topics]
