"""Drift statistics on embeddings: MMD² and a domain classifier as two-sample tests (permuted by
document, as in `statistics`), a 2-D projection for the report, and query coverage by nearest
labeled query."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from indexops.drift.statistics import DriftTest, Level, not_applicable, p_verdict, threshold_verdict, _group_index, _perm_masks, _perm_p

__all__ = ["classifier_test", "coverage_check", "mmd_test", "nearest_similarity", "projection_2d"]


def _sq_dists(z: np.ndarray) -> np.ndarray:
    sq = (z * z).sum(axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def _mmd_rows(k: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Unbiased MMD² for each row of masks (True = baseline); k has a unit diagonal."""
    s = masks.astype(np.float64)
    t = 1.0 - s
    ks = s @ k
    kt = t @ k
    na, nb = s.sum(axis=1), t.sum(axis=1)
    diag = np.diag(k)
    saa = (ks * s).sum(axis=1) - s @ diag
    sbb = (kt * t).sum(axis=1) - t @ diag
    sab = (ks * t).sum(axis=1)
    return saa / (na * (na - 1)) + sbb / (nb * (nb - 1)) - 2.0 * sab / (na * nb)


def mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    groups_x: Sequence[Any] | None = None,
    groups_y: Sequence[Any] | None = None,
    alpha: float = 0.01,
    warn_alpha: float = 0.05,
    n_perm: int = 500,
    seed: int = 0,
    name: str = "embedding MMD² (RBF)",
) -> DriftTest:
    """Maximum mean discrepancy with an RBF kernel (median heuristic) and a permutation p-value.

    Args:
        x: Baseline vectors, shape (n, d).
        y: New vectors, shape (m, d).
        groups_x: Document of each baseline vector (moved together by the permutations).
        groups_y: Document of each new vector.
        alpha: p below this alerts.
        warn_alpha: p below this warns.
        n_perm: Permutations.
        seed: Seed of the permutations.
        name: Name in the report.

    Returns:
        The test; n/a when a side has fewer than 2 vectors or 2 groups.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or len(y) < 2:
        return not_applicable(name, f"too few vectors to compare ({len(x)} baseline, {len(y)} new)", len(x), len(y))
    gidx, n_ga, n_g = _group_index(len(x), len(y), groups_x, groups_y)
    if n_ga < 2 or n_g - n_ga < 2:
        return not_applicable(name, "too few documents on a side to compare", len(x), len(y))
    z = np.vstack([x, y])
    d2 = _sq_dists(z)
    off = d2[~np.eye(len(z), dtype=bool)]
    med = float(np.median(off)) if off.size else 0.0
    if med <= 0:
        med = float(off.mean()) if off.size and off.mean() > 0 else 1.0
    k = np.exp(-d2 / med)
    truth = np.r_[np.ones(len(x), bool), np.zeros(len(y), bool)]
    rng = np.random.default_rng([seed, 17])
    vals = _mmd_rows(k, np.vstack([truth[None, :], _perm_masks(gidx, n_ga, n_g, n_perm, rng)]))
    observed = float(vals[0])
    p = _perm_p(observed, vals[1:])
    v = p_verdict(p, alpha, warn_alpha)
    return DriftTest(name, observed, p, v, f"MMD² {observed:.4f} (bandwidth² {med:.3f}), p={p:.4f}", len(x), len(y),
                     {"bandwidth_sq": round(med, 6), "permutations": n_perm})


def classifier_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    groups_x: Sequence[Any] | None = None,
    groups_y: Sequence[Any] | None = None,
    alpha: float = 0.01,
    warn_alpha: float = 0.05,
    folds: int = 5,
    seed: int = 0,
    name: str = "domain classifier AUC",
) -> DriftTest:
    """Can a cross-validated logistic regression tell new vectors from baseline ones?

    Out-of-fold scores are averaged per group (document) and the AUC is the Mann–Whitney
    statistic of those group scores; its one-sided p-value (AUC > 0.5) is the null-based
    threshold. Folds never split a group. `extra.auc_threshold` is the AUC at which p = alpha
    (normal approximation), so the number can be read without the p-value.

    Args:
        x: Baseline vectors.
        y: New vectors.
        groups_x: Document of each baseline vector.
        groups_y: Document of each new vector.
        alpha: p below this alerts.
        warn_alpha: p below this warns.
        folds: Cross-validation folds (fewer when a side has fewer groups).
        seed: Seed of the fold assignment.
        name: Name in the report.

    Returns:
        The test; statistic = group-level AUC.
    """
    from scipy.stats import mannwhitneyu, norm
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    gidx, n_ga, n_g = _group_index(len(x), len(y), groups_x, groups_y)
    n_gb = n_g - n_ga
    k = min(folds, n_ga, n_gb)
    if k < 2:
        return not_applicable(name, f"too few documents to cross-validate ({n_ga} baseline, {n_gb} new)", len(x), len(y))
    z = np.vstack([x, y])
    labels = np.r_[np.zeros(len(x), int), np.ones(len(y), int)]
    scores = np.zeros(len(z))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in cv.split(z, labels, gidx):
        if len(set(labels[train])) < 2:
            scores[test] = 0.5
            continue
        clf = LogisticRegression(C=1.0, max_iter=2000)
        clf.fit(z[train], labels[train])
        scores[test] = clf.predict_proba(z[test])[:, 1]
    gscore = np.bincount(gidx, weights=scores, minlength=n_g) / np.bincount(gidx, minlength=n_g)
    ga, gb = gscore[:n_ga], gscore[n_ga:]
    u = mannwhitneyu(gb, ga, alternative="greater")
    auc = float(u.statistic / (n_ga * n_gb))
    p = float(u.pvalue)
    thr = 0.5 + float(norm.ppf(1 - alpha)) * math.sqrt((n_ga + n_gb + 1) / (12.0 * n_ga * n_gb))
    v = p_verdict(p, alpha, warn_alpha)
    return DriftTest(name, auc, p, v, f"AUC {auc:.3f} (alert above ~{min(thr, 1.0):.3f} at alpha {alpha}), p={p:.4f}",
                     len(x), len(y), {"auc_threshold": round(min(thr, 1.0), 4), "folds": k, "groups_a": n_ga, "groups_b": n_gb})


def projection_2d(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """PCA of the pooled vectors to two dimensions (for the scatter plot)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) + len(y) < 3:
        return {"a": [], "b": [], "explained_variance": []}
    from sklearn.decomposition import PCA

    z = np.vstack([x, y])
    n = min(2, z.shape[1], len(z))
    pca = PCA(n_components=n, random_state=0)
    c = pca.fit_transform(z)
    if c.shape[1] < 2:
        c = np.hstack([c, np.zeros((len(c), 2 - c.shape[1]))])
    c = np.round(c, 4)
    return {"a": c[: len(x)].tolist(), "b": c[len(x):].tolist(),
            "explained_variance": [round(float(v), 4) for v in pca.explained_variance_ratio_]}


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def nearest_similarity(x: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarity to the nearest row of `ref`, its index) for every row of `x`."""
    if len(x) == 0 or len(ref) == 0:
        return np.zeros(len(x)), np.zeros(len(x), dtype=int)
    s = _unit(x) @ _unit(ref).T
    return s.max(axis=1), s.argmax(axis=1)


def coverage_check(
    production: np.ndarray,
    labeled: np.ndarray,
    *,
    threshold: float = 0.5,
    warn_share: float = 0.1,
    alert_share: float = 0.25,
) -> DriftTest:
    """Share of production queries whose nearest labeled query is far (cosine below `threshold`).

    Args:
        production: Vectors of recent production queries.
        labeled: Vectors of the labeled queries.
        threshold: Cosine similarity under which a query counts as not covered.
        warn_share: A larger uncovered share warns.
        alert_share: A larger uncovered share alerts.

    Returns:
        The check; statistic = uncovered share; `extra.nearest` holds every query's similarity.
    """
    name = "coverage (nearest labeled query)"
    if len(production) == 0 or len(labeled) == 0:
        return not_applicable(name, f"no {'production' if len(production) == 0 else 'labeled'} queries to compare", len(labeled), len(production))
    sims, idx = nearest_similarity(production, labeled)
    share = float((sims < threshold).mean())
    v = threshold_verdict(share, warn_share, alert_share)
    reason = f"{share:.1%} of {len(production)} recent queries have no labeled query within cosine {threshold}"
    if v is Level.ALERT:
        reason += ": the labeled set no longer represents what users ask"
    return DriftTest(name, share, None, v, reason, len(labeled), len(production),
                     {"threshold": threshold, "warn_share": warn_share, "alert_share": alert_share,
                      "nearest": [round(float(s), 4) for s in sims], "nearest_index": [int(i) for i in idx],
                      "median_similarity": round(float(np.median(sims)), 4)})
