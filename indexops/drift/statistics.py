"""Drift statistics: two-sample tests whose false-alarm rate is their alpha.

Every test returns a `DriftTest` (statistic, p-value, verdict). Observations that are not
independent — the chunks of one document, the words of one document — are resampled by group:
a permutation moves whole documents between the two samples, never single chunks or tokens, so
the permutation null holds when documents (not tokens) are exchangeable. p-values use the +1
correction, `(hits + 1) / (permutations + 1)`, which makes `P(p <= alpha) <= alpha` under the null.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

__all__ = [
    "DriftTest",
    "Level",
    "length_shift_test",
    "p_verdict",
    "threshold_verdict",
    "tokenize",
    "vocabulary_drift",
]

_WORD = re.compile(r"[^\W\d_]{2,}")
# A short English stop list: function words dominate counts and carry no topic.
STOPWORDS = frozenset(
    "a an and are as at be been but by can do does for from has have how i if in into is it its of on or our so "
    "than that the their them then there these they this to was we were what when where which who will with you "
    "your not no all any also more most other some such only own same too very just should would could may".split()
)


class Level(str, Enum):
    """A verdict, ordered n/a < ok < warn < alert."""

    NA = "n/a"
    OK = "ok"
    WARN = "warn"
    ALERT = "alert"

    @property
    def severity(self) -> int:
        return ("n/a", "ok", "warn", "alert").index(self.value)

    @staticmethod
    def worst(levels: Sequence[Level | str]) -> Level:
        """The most severe level; n/a for an empty list."""
        return max((Level(x) for x in levels), key=lambda lv: lv.severity, default=Level.NA)


@dataclass(frozen=True)
class DriftTest:
    """One check: what was measured, how surprising it is, and the verdict.

    Attributes:
        name: What was tested, e.g. "chunk length (KS)".
        statistic: The test statistic (None when the test could not run).
        p_value: Permutation or analytic p-value; None for threshold checks.
        verdict: ok / warn / alert, or n/a with the reason.
        reason: One sentence a reader can act on.
        n_a: Size of the baseline sample.
        n_b: Size of the new sample.
        extra: Further figures (thresholds, CIs, ...), JSON-able.
    """

    name: str
    statistic: float | None
    p_value: float | None
    verdict: Level
    reason: str
    n_a: int = 0
    n_b: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "statistic": _num(self.statistic), "p_value": _num(self.p_value), "verdict": self.verdict.value,
            "reason": self.reason, "n_a": self.n_a, "n_b": self.n_b, "extra": self.extra,
        }


def _num(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def not_applicable(name: str, reason: str, n_a: int = 0, n_b: int = 0) -> DriftTest:
    return DriftTest(name, None, None, Level.NA, reason, n_a, n_b)


def p_verdict(p: float, alpha: float, warn_alpha: float) -> Level:
    """alert when p < alpha, warn when p < warn_alpha, else ok."""
    if p < alpha:
        return Level.ALERT
    if p < warn_alpha:
        return Level.WARN
    return Level.OK


def threshold_verdict(value: float, warn: float, alert: float) -> Level:
    """alert when value > alert, warn when value > warn (higher is worse)."""
    if value > alert:
        return Level.ALERT
    if value > warn:
        return Level.WARN
    return Level.OK


# ------------------------------------------------------------------------------------------
# group permutations
# ------------------------------------------------------------------------------------------


def _group_index(n_a: int, n_b: int, groups_a: Sequence[Any] | None, groups_b: Sequence[Any] | None) -> tuple[np.ndarray, int, int]:
    """Item -> group number, with the baseline's groups first; returns (index, groups in a, groups)."""
    ga = list(range(n_a)) if groups_a is None else list(groups_a)
    gb = list(range(n_b)) if groups_b is None else list(groups_b)
    if len(ga) != n_a or len(gb) != n_b:
        raise ValueError("a group label is needed for every observation")
    ids: dict[tuple[int, Any], int] = {}
    idx = np.empty(n_a + n_b, dtype=np.int64)
    for i, g in enumerate(ga):
        idx[i] = ids.setdefault((0, g), len(ids))
    n_ga = len(ids)
    for i, g in enumerate(gb):
        idx[n_a + i] = ids.setdefault((1, g), len(ids))
    return idx, n_ga, len(ids)


def _perm_masks(group_idx: np.ndarray, n_ga: int, n_groups: int, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """(n_perm, n_items) booleans, True = baseline side: whole groups are moved together."""
    order = np.argsort(rng.random((n_perm, n_groups)), axis=1)
    in_a = np.zeros((n_perm, n_groups), dtype=bool)
    np.put_along_axis(in_a, order[:, :n_ga], True, axis=1)
    return in_a[:, group_idx]


def _perm_p(observed: float, null: np.ndarray) -> float:
    tol = 1e-12 * max(1.0, abs(observed))
    return float((np.count_nonzero(null >= observed - tol) + 1) / (null.size + 1))


# ------------------------------------------------------------------------------------------
# chunk lengths
# ------------------------------------------------------------------------------------------


def _ks_rows(sorted_vals: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """KS statistic for each row of masks over values already sorted (ties handled at block ends)."""
    m = masks.astype(np.float64)
    na = m.sum(axis=1, keepdims=True)
    nb = m.shape[1] - na
    ca = np.cumsum(m, axis=1) / na
    cb = np.cumsum(1.0 - m, axis=1) / nb
    ends = np.flatnonzero(np.r_[sorted_vals[1:] != sorted_vals[:-1], True])
    return np.abs(ca[:, ends] - cb[:, ends]).max(axis=1)


def length_shift_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    groups_a: Sequence[Any] | None = None,
    groups_b: Sequence[Any] | None = None,
    alpha: float = 0.01,
    warn_alpha: float = 0.05,
    n_perm: int = 500,
    seed: int = 0,
    name: str = "chunk length (KS)",
) -> DriftTest:
    """Two-sample Kolmogorov–Smirnov statistic with a group-permutation p-value.

    Args:
        a: Baseline lengths.
        b: New lengths.
        groups_a: Document of each baseline length (chunks of one document move together).
        groups_b: Document of each new length.
        alpha: p below this alerts.
        warn_alpha: p below this warns.
        n_perm: Permutations.
        seed: Seed of the permutations.
        name: Name in the report.

    Returns:
        The test; n/a when a side has fewer than 2 groups.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        return not_applicable(name, f"too few chunks to compare ({x.size} baseline, {y.size} new)", x.size, y.size)
    gidx, n_ga, n_g = _group_index(x.size, y.size, groups_a, groups_b)
    if n_ga < 2 or n_g - n_ga < 2:
        return not_applicable(name, "too few documents on a side to compare", x.size, y.size)
    vals = np.concatenate([x, y])
    order = np.argsort(vals, kind="stable")
    sv = vals[order]
    truth = np.r_[np.ones(x.size, bool), np.zeros(y.size, bool)]
    observed = float(_ks_rows(sv, truth[order][None, :])[0])
    rng = np.random.default_rng([seed, 11])
    null = _ks_rows(sv, _perm_masks(gidx, n_ga, n_g, n_perm, rng)[:, order])
    p = _perm_p(observed, null)
    v = p_verdict(p, alpha, warn_alpha)
    med_a, med_b = float(np.median(x)), float(np.median(y))
    reason = (f"median {med_a:.0f} -> {med_b:.0f} chars, KS D={observed:.3f}, p={p:.4f}"
              + (" : the length distribution changed (chunker or source change?)" if v is Level.ALERT else ""))
    return DriftTest(name, observed, p, v, reason, int(x.size), int(y.size),
                     {"median_a": med_a, "median_b": med_b, "permutations": n_perm, "groups_a": n_ga, "groups_b": n_g - n_ga})


# ------------------------------------------------------------------------------------------
# vocabulary
# ------------------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lower-case words of two or more letters, without English stop words."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def _jsd_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence (bits) between row-normalised count matrices."""
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)
    m = 0.5 * (p + q)

    def _kl(u: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(u > 0, u * np.log2(u / np.where(m > 0, m, 1.0)), 0.0)
        return t.sum(axis=1)

    return 0.5 * _kl(p) + 0.5 * _kl(q)


@dataclass(frozen=True)
class VocabularyDrift:
    """The permutation test plus descriptive figures."""

    test: DriftTest
    oov_share: float
    rising: list[dict[str, Any]]
    falling: list[dict[str, Any]]
    tokens_a: int
    tokens_b: int
    oov_test: DriftTest | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"test": self.test.to_dict(), "oov_share": _num(self.oov_share), "rising": self.rising, "falling": self.falling,
                "tokens_a": self.tokens_a, "tokens_b": self.tokens_b, "oov_test": self.oov_test.to_dict() if self.oov_test else None}


def _oov_rows(x: Any, masks: np.ndarray, block: int = 64) -> np.ndarray:
    """Share of the non-baseline side's tokens whose term never occurs on the baseline side, per mask row."""
    present = x.copy()
    present.data[:] = 1.0
    out = []
    for i in range(0, len(masks), block):
        m = masks[i: i + block].astype(np.float64)
        in_a = np.asarray((present.T @ m.T).T) > 0
        cb = np.asarray((x.T @ (1.0 - m).T).T)
        tot = cb.sum(axis=1)
        out.append(np.where(tot > 0, (cb * ~in_a).sum(axis=1) / np.maximum(tot, 1e-300), 0.0))
    return np.concatenate(out)


def vocabulary_drift(
    docs_a: Sequence[str],
    docs_b: Sequence[str],
    *,
    alpha: float = 0.01,
    warn_alpha: float = 0.05,
    n_perm: int = 500,
    seed: int = 0,
    top_terms: int = 10,
    smoothing: float = 0.5,
    min_count: int = 2,
    max_terms: int = 2000,
    oov_warn: float = 0.0,
    oov_alert: float = 0.0,
) -> VocabularyDrift:
    """Did the word distribution of new documents move away from the baseline's?

    Statistic: Jensen–Shannon divergence between the pooled term distributions of the two
    document sets (the `max_terms` most frequent terms plus one bucket for the rest). The
    p-value permutes *documents* between the sets: words inside one document are not
    independent, so a chi-square over token counts would alarm on almost any two samples.
    Rising/falling terms rank the smoothed log-ratio of per-token rates.

    Args:
        docs_a: Baseline texts (one per document).
        docs_b: New texts.
        alpha: p below this alerts.
        warn_alpha: p below this warns.
        n_perm: Permutations.
        seed: Seed of the permutations.
        top_terms: Terms listed as rising and as falling.
        smoothing: Pseudo-count added to every term for the log-ratio.
        min_count: A term must occur this often on its side to be listed.
        max_terms: Vocabulary size kept for the statistic.
        oov_warn: The out-of-vocabulary share must also exceed this to warn (an effect size: small
            corpora always bring new words, so only a share that is both large and unusual counts).
        oov_alert: ... and this to alert.

    Returns:
        A `VocabularyDrift`; its test is n/a when a side has fewer than 2 documents with words.
    """
    from scipy.sparse import csr_matrix

    name = "vocabulary (JSD, document permutation)"
    toks_a = [Counter(tokenize(t)) for t in docs_a]
    toks_b = [Counter(tokenize(t)) for t in docs_b]
    toks_a = [c for c in toks_a if c]
    toks_b = [c for c in toks_b if c]
    tot_a: Counter[str] = sum(toks_a, Counter())
    tot_b: Counter[str] = sum(toks_b, Counter())
    na_tok, nb_tok = sum(tot_a.values()), sum(tot_b.values())
    oov = sum(n for t, n in tot_b.items() if t not in tot_a) / nb_tok if nb_tok else 0.0
    vocab = set(tot_a) | set(tot_b)
    v = max(len(vocab), 1)

    def rate(c: int, n: int) -> float:
        return (c + smoothing) / (n + smoothing * v)

    lr = {t: math.log(rate(tot_b[t], nb_tok) / rate(tot_a[t], na_tok)) for t in vocab} if na_tok and nb_tok else {}

    def row(t: str) -> dict[str, Any]:
        return {"term": t, "count_a": tot_a[t], "count_b": tot_b[t], "log_ratio": round(lr[t], 4),
                "per_1000_a": round(1000 * tot_a[t] / max(na_tok, 1), 3), "per_1000_b": round(1000 * tot_b[t] / max(nb_tok, 1), 3)}

    rising = [row(t) for t in sorted((t for t in lr if tot_b[t] >= min_count and lr[t] > 0), key=lambda t: (-lr[t], t))[:top_terms]]
    falling = [row(t) for t in sorted((t for t in lr if tot_a[t] >= min_count and lr[t] < 0), key=lambda t: (lr[t], t))[:top_terms]]
    if len(toks_a) < 2 or len(toks_b) < 2:
        test = not_applicable(name, f"too few documents with words ({len(toks_a)} baseline, {len(toks_b)} new)", len(toks_a), len(toks_b))
        return VocabularyDrift(test, oov, rising, falling, na_tok, nb_tok)
    keep = [t for t, _ in (tot_a + tot_b).most_common(max_terms)]
    col = {t: i for i, t in enumerate(keep)}
    other = len(keep)
    rows, cols, vals = [], [], []
    for i, c in enumerate(toks_a + toks_b):
        for t, n in c.items():
            rows.append(i)
            cols.append(col.get(t, other))
            vals.append(n)
    x = csr_matrix((np.asarray(vals, np.float64), (rows, cols)), shape=(len(toks_a) + len(toks_b), other + 1))
    total = np.asarray(x.sum(axis=0)).ravel()
    truth = np.r_[np.ones(len(toks_a)), np.zeros(len(toks_b))]
    gidx, n_ga, n_g = _group_index(len(toks_a), len(toks_b), None, None)
    rng = np.random.default_rng([seed, 13])
    masks = np.vstack([truth[None, :], _perm_masks(gidx, n_ga, n_g, n_perm, rng).astype(np.float64)])
    ca = np.asarray((x.T @ masks.T).T)
    jsd = _jsd_rows(ca, total[None, :] - ca)
    observed = float(jsd[0])
    p = _perm_p(observed, jsd[1:])
    verdict = p_verdict(p, alpha, warn_alpha)
    top = ", ".join(r["term"] for r in rising[:3])
    reason = f"JSD {observed:.4f} bits, p={p:.4f}" + (f"; rising: {top}" if top and verdict is not Level.OK else "")
    test = DriftTest(name, observed, p, verdict, reason, len(toks_a), len(toks_b), {"permutations": n_perm, "terms": len(keep)})
    # OOV share against its permutation null: the same document splits, the full vocabulary
    full = {t: i for i, t in enumerate(sorted(vocab))}
    r2, c2, v2 = [], [], []
    for i, c in enumerate(toks_a + toks_b):
        for t, n in c.items():
            r2.append(i)
            c2.append(full[t])
            v2.append(n)
    xf = csr_matrix((np.asarray(v2, np.float64), (r2, c2)), shape=(len(toks_a) + len(toks_b), len(full)))
    oovs = _oov_rows(xf, masks > 0)
    p_oov = _perm_p(float(oovs[0]), oovs[1:])
    lv = p_verdict(p_oov, alpha, warn_alpha)
    if lv is Level.ALERT and oov <= oov_alert:
        lv = Level.WARN
    if lv is Level.WARN and oov <= oov_warn:
        lv = Level.OK
    null_med = float(np.median(oovs[1:]))
    oov_test = DriftTest("out-of-vocabulary share", oov, p_oov, lv,
                         f"{oov:.1%} of the new documents' words never occur in the baseline documents (random splits: median {null_med:.1%}), p={p_oov:.4f}",
                         na_tok, nb_tok, {"null_median": round(null_med, 4), "warn": oov_warn, "alert": oov_alert, "permutations": n_perm})
    return VocabularyDrift(test, oov, rising, falling, na_tok, nb_tok, oov_test)
