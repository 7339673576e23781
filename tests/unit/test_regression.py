"""Paired regression comparison (indexops/eval/regression.py): bootstrap CI, sign-flip test,
win/tie/loss and the pass/warn/fail verdict."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from indexops.eval.metrics import evaluate
from indexops.eval.regression import (
    PairedComparison,
    RegressionThresholds,
    Status,
    Verdict,
    judge,
    paired_comparison,
    regression_verdict,
)


def _values(seed: int = 0, n: int = 100, low: float = 0.3, high: float = 1.0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {f"q{i:03d}": float(v) for i, v in enumerate(rng.uniform(low, high, n))}


def _planted_drop(base: dict[str, float], share: float = 0.8, drop: float = 0.2) -> dict[str, float]:
    qids = sorted(base)
    hit = set(qids[: int(len(qids) * share)])
    return {q: v - drop if q in hit else v for q, v in base.items()}


def _both(values: dict[str, float]) -> dict[str, dict[str, float]]:
    return {"ndcg@10": values, "recall@100": values}


# ---- the comparison -----------------------------------------------------------------------------


def test_no_op_change_passes_with_p_one_and_a_zero_ci():
    base = _values()
    c = paired_comparison(base, dict(base), metric="ndcg@10")
    assert (c.mean_delta, c.ci_low, c.ci_high) == (0.0, 0.0, 0.0)
    assert c.p_value == 1.0
    assert (c.wins, c.ties, c.losses) == (0, 100, 0)
    assert c.mean_baseline == c.mean_candidate == pytest.approx(np.mean(list(base.values())))
    v = regression_verdict(_both(base), _both(dict(base)))
    assert v.status is Status.PASS and not v.failed
    assert {m: mv.status for m, mv in v.metrics.items()} == {"ndcg@10": Status.PASS, "recall@100": Status.PASS}


def test_planted_drop_fails_with_a_small_p_value():
    base = _values()
    cand = _planted_drop(base)  # -0.2 on 80 of 100 queries
    c = paired_comparison(base, cand)
    assert c.mean_delta == pytest.approx(-0.16)
    assert c.ci_low <= c.mean_delta <= c.ci_high < 0
    assert c.p_value < 0.01
    assert (c.wins, c.ties, c.losses) == (0, 20, 80)
    v = regression_verdict(_both(base), _both(cand))
    assert v.status is Status.FAIL and v.failed
    assert all(mv.status is Status.FAIL for mv in v.metrics.values())
    assert "significant drop" in v.metrics["ndcg@10"].reason


def test_a_drop_on_one_metric_fails_the_whole_verdict():
    base = _values()
    v = regression_verdict(_both(base), {"ndcg@10": _planted_drop(base), "recall@100": dict(base)})
    assert v.metrics["ndcg@10"].status is Status.FAIL
    assert v.metrics["recall@100"].status is Status.PASS
    assert v.status is Status.FAIL


def test_p_value_has_the_plus_one_correction():
    base = _values()
    c = paired_comparison(base, _planted_drop(base), n_permutations=99)
    # no sign flip of 80 equal drops reaches the observed sum, so p is exactly 1 / (99 + 1), never 0
    assert c.p_value == pytest.approx(1 / 100)


def test_small_noise_warns_or_passes_but_never_fails():
    base = _values(seed=1, n=200)
    rng = np.random.default_rng(7)
    cand = {q: v + float(rng.normal(0.0, 0.01)) for q, v in base.items()}
    v = regression_verdict(_both(base), _both(cand))
    c = v.metrics["ndcg@10"].comparison
    assert abs(c.mean_delta) < 0.005
    assert v.status in {Status.PASS, Status.WARN}
    assert c.wins > 50 and c.losses > 50


def test_large_but_noisy_drop_warns_rather_than_fails():
    base = {f"q{i}": 0.5 for i in range(10)}
    cand = {q: 0.5 + (0.3 if i % 2 else -0.4) for i, q in enumerate(base)}  # mean delta -0.05
    c = paired_comparison(base, cand)
    assert c.mean_delta == pytest.approx(-0.05)
    assert c.ci_low < 0 < c.ci_high and c.p_value > 0.05
    mv = judge(c, RegressionThresholds())
    assert mv.status is Status.WARN and "CI includes 0" in mv.reason


def test_significant_but_small_drop_warns():
    base = _values(n=200)
    cand = {q: v - 0.005 for q, v in base.items()}  # below warn_drop, but on every query
    c = paired_comparison(base, cand)
    assert c.significant_drop and c.mean_delta > -0.01
    assert judge(c, RegressionThresholds()).status is Status.WARN


def test_drop_between_warn_and_fail_warns_and_improvement_passes():
    base = _values()
    c = paired_comparison(base, {q: v - 0.02 for q, v in base.items()})
    assert judge(c, RegressionThresholds()).status is Status.WARN
    up = paired_comparison(base, {q: v + 0.2 for q, v in base.items()})
    assert (up.wins, up.losses) == (100, 0) and up.ci_low > 0
    assert judge(up, RegressionThresholds()).status is Status.PASS


def test_thresholds_move_the_verdict():
    base = _values()
    c = paired_comparison(base, {q: v - 0.02 for q, v in base.items()})
    assert judge(c, RegressionThresholds(warn_drop=0.01, fail_drop=0.015)).status is Status.FAIL
    assert judge(c, RegressionThresholds(warn_drop=0.05, fail_drop=0.1)).status is Status.WARN  # still significant


def test_win_tie_loss_and_missing_queries_count_as_zero():
    base = {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}
    cand = {"a": 0.6, "b": 0.5, "c": 0.4, "e": 0.25}
    c = paired_comparison(base, cand)
    # a win, b tie, c loss, d loss (0.5 -> 0), e win (0 -> 0.25)
    assert (c.wins, c.ties, c.losses) == (2, 1, 2)
    assert c.n_queries == 5 and (c.n_only_baseline, c.n_only_candidate) == (1, 1)
    assert c.mean_baseline == pytest.approx(2.0 / 5)
    assert c.mean_candidate == pytest.approx(1.75 / 5)
    assert c.mean_delta == pytest.approx((0.1 + 0 - 0.1 - 0.5 + 0.25) / 5)


def test_same_seed_same_result_other_seed_other_draws():
    base = _values()
    rng = np.random.default_rng(3)
    cand = {q: v + float(rng.normal(-0.01, 0.05)) for q, v in base.items()}
    first = paired_comparison(base, cand, seed=11)
    assert paired_comparison(base, cand, seed=11) == first
    assert regression_verdict(_both(base), _both(cand), seed=11).to_dict() == (
        regression_verdict(_both(base), _both(cand), seed=11).to_dict()
    )
    other = paired_comparison(base, cand, seed=12)
    assert (other.ci_low, other.ci_high, other.p_value) != (first.ci_low, first.ci_high, first.p_value)
    assert other.mean_delta == first.mean_delta


def test_sign_flip_p_value_matches_exact_enumeration():
    rng = np.random.default_rng(5)
    delta = rng.normal(-0.05, 0.1, 12)
    base = {f"q{i}": 0.5 for i in range(12)}
    cand = {f"q{i}": 0.5 + d for i, d in enumerate(delta)}
    d = np.array([cand[q] - base[q] for q in sorted(base)])
    flips = np.array(list(itertools.product([-1.0, 1.0], repeat=12)))
    exact = np.mean(np.abs(flips @ d) >= abs(d.sum()) - 1e-12)
    c = paired_comparison(base, cand, n_permutations=20_000)
    assert 0.02 < exact < 0.98  # not a trivial case
    assert c.p_value == pytest.approx(exact, abs=0.015)


def test_bootstrap_ci_matches_the_normal_approximation():
    rng = np.random.default_rng(9)
    delta = rng.normal(-0.05, 0.1, 400)
    base = {f"q{i}": 0.5 for i in range(400)}
    cand = {f"q{i}": 0.5 + d for i, d in enumerate(delta)}
    c = paired_comparison(base, cand)
    half = 1.96 * delta.std(ddof=1) / np.sqrt(delta.size)
    assert c.ci_low == pytest.approx(delta.mean() - half, abs=0.15 * half)
    assert c.ci_high == pytest.approx(delta.mean() + half, abs=0.15 * half)
    wider = paired_comparison(base, cand, confidence=0.99)
    assert wider.ci_low < c.ci_low and wider.ci_high > c.ci_high


def test_single_query_and_bad_parameters():
    c = paired_comparison({"q": 0.5}, {"q": 0.2})
    assert (c.ci_low, c.ci_high) == pytest.approx((-0.3, -0.3))
    assert c.p_value == 1.0  # one pair cannot be told apart from its sign flip
    with pytest.raises(ValueError, match="no queries"):
        paired_comparison({}, {})
    with pytest.raises(ValueError, match="confidence"):
        paired_comparison({"q": 1.0}, {"q": 1.0}, confidence=1.0)
    with pytest.raises(ValueError, match="finite"):
        paired_comparison({"q": float("nan")}, {"q": 1.0})
    with pytest.raises(ValueError):
        paired_comparison({"q": 1.0}, {"q": 1.0}, n_resamples=0)


# ---- thresholds, verdicts and their plumbing ----------------------------------------------------


def test_thresholds_defaults_validation_and_descriptions():
    t = RegressionThresholds()
    assert (t.warn_drop, t.fail_drop, t.alpha, t.metrics) == (0.01, 0.03, 0.05, ["ndcg@10", "recall@100"])
    assert all(f.description for f in RegressionThresholds.model_fields.values())
    assert RegressionThresholds(metrics=["NDCG@10", "ndcg@10", "map"]).metrics == ["ndcg@10", "map"]
    for bad in (
        {"warn_drop": 0.05, "fail_drop": 0.01},
        {"alpha": 0.0},
        {"warn_drop": -0.1},
        {"metrics": []},
        {"metrics": ["ndcg@0"]},
        {"metrics": ["bleu@4"]},
        {"typo": 1},
    ):
        with pytest.raises(ValidationError):
            RegressionThresholds(**bad)


def test_alpha_sets_the_ci_level_and_judge_checks_it():
    base = _values()
    cand = _planted_drop(base)
    v = regression_verdict(_both(base), _both(cand), RegressionThresholds(alpha=0.01))
    assert v.metrics["ndcg@10"].comparison.confidence == pytest.approx(0.99)
    with pytest.raises(ValueError, match="confidence"):
        judge(paired_comparison(base, cand, confidence=0.95), RegressionThresholds(alpha=0.01))


def test_missing_metric_is_an_error():
    base = _values()
    with pytest.raises(ValueError, match="recall@100"):
        regression_verdict({"ndcg@10": base}, _both(base))


def test_verdict_on_eval_results_and_to_dict():
    qrels = {f"q{i}": {f"rel{i}": 1} for i in range(30)}
    good = {q: {next(iter(r)): 1.0, "junk": 0.5} for q, r in qrels.items()}
    # the candidate pushes the relevant doc below 11 junk docs on 20 of 30 queries
    worse = {
        q: ({**{f"junk{j:02d}": 0.5 for j in range(11)}, next(iter(r)): 0.1} if i < 20 else good[q])
        for i, (q, r) in enumerate(qrels.items())
    }
    metrics = ["ndcg@10", "recall@100"]
    v = regression_verdict(evaluate(good, qrels, metrics), evaluate(worse, qrels, metrics), seed=1)
    assert isinstance(v, Verdict)
    assert v.metrics["ndcg@10"].status is Status.FAIL
    assert v.metrics["recall@100"].status is Status.PASS  # still retrieved within 100
    assert v.status is Status.FAIL
    d = v.to_dict()
    assert d["status"] == "fail"
    assert d["thresholds"] == RegressionThresholds().model_dump()
    cmp = d["metrics"]["ndcg@10"]["comparison"]
    assert cmp["losses"] == 20 and cmp["ties"] == 10 and cmp["significant_drop"] is True
    assert set(cmp) >= {"mean_baseline", "mean_candidate", "mean_delta", "ci_low", "ci_high", "p_value", "wins"}
    assert isinstance(v.metrics["ndcg@10"].comparison, PairedComparison)


def test_status_worst():
    assert Status.worst([Status.PASS, Status.WARN]) is Status.WARN
    assert Status.worst([Status.WARN, Status.FAIL, Status.PASS]) is Status.FAIL
    assert Status.worst([]) is Status.PASS
