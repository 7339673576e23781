"""Regression as a paired comparison of per-query metric values, not one threshold on one number.

For each metric the baseline and candidate are compared query by query: the mean delta, a paired
bootstrap confidence interval of that mean, a two-sided paired randomization (sign-flip) test and
win/tie/loss counts. A verdict then applies drop thresholds *and* significance, so a noisy dip on
a handful of queries warns while a clear drop fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from indexops.eval.metrics import EvalResult, parse_metric

__all__ = [
    "MetricVerdict",
    "PairedComparison",
    "RegressionThresholds",
    "Status",
    "Verdict",
    "judge",
    "paired_comparison",
    "regression_verdict",
]

# Draws are made in blocks of about this many numbers so 10,000 resamples of a large query set
# stay vectorised without materialising a (resamples x queries) matrix at once.
_BLOCK_ELEMENTS = 2_000_000


class Status(str, Enum):
    """Outcome of a check, ordered pass < warn < fail."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def severity(self) -> int:
        return ("pass", "warn", "fail").index(self.value)

    @staticmethod
    def worst(statuses: list[Status]) -> Status:
        """The most severe status; `pass` for an empty list."""
        return max(statuses, key=lambda s: s.severity, default=Status.PASS)


class RegressionThresholds(BaseModel):
    """When a candidate index counts as a regression against the baseline."""

    model_config = ConfigDict(extra="forbid")

    warn_drop: float = Field(0.01, ge=0, description="a mean per-query drop larger than this warns")
    fail_drop: float = Field(
        0.03, ge=0, description="a mean drop larger than this fails, if the confidence interval also excludes 0"
    )
    alpha: float = Field(
        0.05, gt=0, lt=1, description="two-sided significance level; the bootstrap CI has confidence 1 - alpha"
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["ndcg@10", "recall@100"],
        min_length=1,
        description="metrics compared, e.g. ndcg@10, recall@100, mrr@10, map",
    )

    @field_validator("metrics")
    @classmethod
    def _canonical_metrics(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(parse_metric(m).name for m in value))

    @model_validator(mode="after")
    def _fail_not_below_warn(self) -> RegressionThresholds:
        if self.fail_drop < self.warn_drop:
            raise ValueError(f"fail_drop ({self.fail_drop}) must be >= warn_drop ({self.warn_drop})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


@dataclass(frozen=True)
class PairedComparison:
    """Baseline vs candidate on one metric over the union of their queries (missing = 0).

    Attributes:
        metric: The metric name (informational).
        n_queries: Queries compared.
        mean_baseline: Mean of the baseline's per-query values.
        mean_candidate: Mean of the candidate's per-query values.
        mean_delta: Mean of candidate - baseline (negative is a drop).
        ci_low: Lower bound of the paired bootstrap CI of `mean_delta`.
        ci_high: Upper bound of that CI.
        confidence: CI confidence level, e.g. 0.95.
        p_value: Two-sided paired randomization (sign-flip) test p-value, (hits + 1) / (n + 1).
        wins: Queries where the candidate is better.
        ties: Queries where both are equal.
        losses: Queries where the candidate is worse.
        n_only_baseline: Queries only the baseline had (the candidate counted as 0).
        n_only_candidate: Queries only the candidate had (the baseline counted as 0).
        n_resamples: Bootstrap resamples drawn.
        n_permutations: Sign-flip permutations drawn.
        seed: Seed of the random draws.
    """

    metric: str
    n_queries: int
    mean_baseline: float
    mean_candidate: float
    mean_delta: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    wins: int
    ties: int
    losses: int
    n_only_baseline: int = 0
    n_only_candidate: int = 0
    n_resamples: int = 10_000
    n_permutations: int = 10_000
    seed: int = 0

    @property
    def significant_drop(self) -> bool:
        """The whole confidence interval lies below zero."""
        return self.ci_high < 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant_drop": self.significant_drop}


def _row_blocks(total: int, n: int) -> list[int]:
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    return [min(rows, total - start) for start in range(0, total, rows)]


def _bootstrap_means(delta: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` resamples of `delta` drawn with replacement."""
    n = delta.size
    out = [delta[rng.integers(0, n, size=(rows, n))].mean(axis=1) for rows in _row_blocks(n_resamples, n)]
    return np.concatenate(out)


def _sign_flip_p_value(delta: np.ndarray, n_permutations: int, rng: np.random.Generator) -> float:
    """Two-sided p-value of H0 "the sign of each paired difference is arbitrary"."""
    n = delta.size
    observed = abs(math.fsum(delta))
    # Sums of the same numbers in another order can differ in the last bits; without the
    # tolerance an all-zero or symmetric delta could miss hits it should count.
    tol = 1e-12 * max(1.0, float(np.abs(delta).sum()))
    hits = 0
    for rows in _row_blocks(n_permutations, n):
        signs = rng.integers(0, 2, size=(rows, n), dtype=np.int8).astype(np.float64) * 2.0 - 1.0
        hits += int(np.count_nonzero(np.abs(signs @ delta) >= observed - tol))
    return (hits + 1) / (n_permutations + 1)


def paired_comparison(
    baseline: Mapping[str, float],
    candidate: Mapping[str, float],
    *,
    metric: str = "",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    n_permutations: int = 10_000,
    seed: int = 0,
    tie_tolerance: float = 1e-12,
) -> PairedComparison:
    """Compare two systems' per-query values of one metric, pairing by qid.

    The CI is a percentile bootstrap of the mean delta (queries resampled with replacement); the
    p-value is a Monte Carlo sign-flip randomization test on the mean delta with the +1 correction,
    so it is never 0. Both use a seeded `numpy.random.Generator`, so equal inputs and seed give
    equal results.

    Args:
        baseline: `{qid: value}` of the reference system.
        candidate: `{qid: value}` of the system under test.
        metric: Name carried into the result.
        confidence: CI confidence level in (0, 1).
        n_resamples: Bootstrap resamples, >= 1.
        n_permutations: Random sign flips, >= 1.
        seed: Seed for both random streams.
        tie_tolerance: |delta| at or below this counts as a tie.

    Returns:
        A `PairedComparison`.

    Raises:
        ValueError: if neither side has a query, a value is not finite, or a parameter is out of range.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1 or n_permutations < 1:
        raise ValueError("n_resamples and n_permutations must be >= 1")
    qids = sorted(set(baseline) | set(candidate))
    if not qids:
        raise ValueError(f"no queries to compare for metric {metric!r}")
    b = np.array([float(baseline.get(q, 0.0)) for q in qids], dtype=np.float64)
    c = np.array([float(candidate.get(q, 0.0)) for q in qids], dtype=np.float64)
    if not (np.isfinite(b).all() and np.isfinite(c).all()):
        raise ValueError(f"per-query values of {metric!r} must be finite")
    delta = c - b

    boot_rng = np.random.default_rng([seed, 0])
    perm_rng = np.random.default_rng([seed, 1])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(_bootstrap_means(delta, n_resamples, boot_rng), [tail, 1.0 - tail])

    return PairedComparison(
        metric=metric,
        n_queries=len(qids),
        mean_baseline=float(b.mean()),
        mean_candidate=float(c.mean()),
        mean_delta=float(delta.mean()),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        p_value=_sign_flip_p_value(delta, n_permutations, perm_rng),
        wins=int(np.count_nonzero(delta > tie_tolerance)),
        ties=int(np.count_nonzero(np.abs(delta) <= tie_tolerance)),
        losses=int(np.count_nonzero(delta < -tie_tolerance)),
        n_only_baseline=sum(1 for q in qids if q not in candidate),
        n_only_candidate=sum(1 for q in qids if q not in baseline),
        n_resamples=n_resamples,
        n_permutations=n_permutations,
        seed=seed,
    )


@dataclass(frozen=True)
class MetricVerdict:
    """The status of one metric and the reason, with the comparison behind it."""

    metric: str
    status: Status
    reason: str
    comparison: PairedComparison

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "status": self.status.value,
            "reason": self.reason,
            "comparison": self.comparison.to_dict(),
        }


@dataclass(frozen=True)
class Verdict:
    """The overall status (the worst metric's) and each metric's verdict."""

    status: Status
    metrics: dict[str, MetricVerdict]
    thresholds: RegressionThresholds = field(default_factory=RegressionThresholds)

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "metrics": {m: v.to_dict() for m, v in self.metrics.items()},
            "thresholds": self.thresholds.to_dict(),
        }


def judge(comparison: PairedComparison, thresholds: RegressionThresholds) -> MetricVerdict:
    """Apply the thresholds to one comparison.

    * fail: mean delta < -fail_drop and the CI's upper bound < 0 (a large, significant drop);
    * warn: mean delta < -warn_drop, or a significant drop smaller than that;
    * pass: otherwise (improvements always pass).

    Args:
        comparison: Made with `confidence = 1 - thresholds.alpha`.
        thresholds: The drop thresholds and alpha.

    Returns:
        The metric's `MetricVerdict`.

    Raises:
        ValueError: if the comparison's confidence does not match `1 - thresholds.alpha`.
    """
    if not math.isclose(comparison.confidence, 1.0 - thresholds.alpha):
        raise ValueError(
            f"comparison has confidence {comparison.confidence}, thresholds need {1.0 - thresholds.alpha}"
        )
    c = comparison
    facts = (
        f"mean delta {c.mean_delta:+.4f} ({c.mean_baseline:.4f} -> {c.mean_candidate:.4f}), "
        f"{c.confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}], p={c.p_value:.4f}, "
        f"win/tie/loss {c.wins}/{c.ties}/{c.losses}"
    )
    if c.mean_delta < -thresholds.fail_drop and c.significant_drop:
        status, why = Status.FAIL, f"significant drop larger than {thresholds.fail_drop}"
    elif c.mean_delta < -thresholds.warn_drop:
        status, why = Status.WARN, f"drop larger than {thresholds.warn_drop}"
        if not c.significant_drop:
            why += " (the CI includes 0)"
    elif c.significant_drop:
        status, why = Status.WARN, f"significant drop, within {thresholds.warn_drop}"
    else:
        status, why = Status.PASS, "no drop beyond the thresholds"
    return MetricVerdict(c.metric, status, f"{why}: {facts}", c)


def _per_query_by_metric(x: EvalResult | Mapping[str, Mapping[str, float]]) -> Mapping[str, Mapping[str, float]]:
    return x.per_query if isinstance(x, EvalResult) else x


def regression_verdict(
    baseline: EvalResult | Mapping[str, Mapping[str, float]],
    candidate: EvalResult | Mapping[str, Mapping[str, float]],
    thresholds: RegressionThresholds | None = None,
    *,
    n_resamples: int = 10_000,
    n_permutations: int = 10_000,
    seed: int = 0,
) -> Verdict:
    """Compare a candidate against a baseline on every metric of the thresholds.

    Args:
        baseline: The reference `EvalResult`, or `{metric: {qid: value}}`.
        candidate: The `EvalResult` under test, or `{metric: {qid: value}}`.
        thresholds: Defaults to `RegressionThresholds()`.
        n_resamples: Bootstrap resamples per metric.
        n_permutations: Sign flips per metric.
        seed: Seed for every metric's draws.

    Returns:
        A `Verdict` whose status is the worst metric's.

    Raises:
        ValueError: if a threshold metric is missing from either side.
    """
    thresholds = thresholds or RegressionThresholds()
    base, cand = _per_query_by_metric(baseline), _per_query_by_metric(candidate)
    verdicts: dict[str, MetricVerdict] = {}
    for metric in thresholds.metrics:
        for side, values in (("baseline", base), ("candidate", cand)):
            if metric not in values:
                raise ValueError(f"{side} has no per-query values for {metric!r}; it has {sorted(values)}")
        comparison = paired_comparison(
            base[metric],
            cand[metric],
            metric=metric,
            confidence=1.0 - thresholds.alpha,
            n_resamples=n_resamples,
            n_permutations=n_permutations,
            seed=seed,
        )
        verdicts[metric] = judge(comparison, thresholds)
    return Verdict(Status.worst([v.status for v in verdicts.values()]), verdicts, thresholds)
