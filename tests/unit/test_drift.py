"""Drift statistics: hand-computed values, synthetic drift that must alert, and the measured
false-alarm rate of every test over 20 seeds of no drift."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from indexops.drift import embedding_tests as E
from indexops.drift import statistics as D
from indexops.embed.hashing import HashingEmbedder
from indexops.eval.regression import RegressionThresholds, Status, judge, paired_comparison
from indexops.ingest.chunking import Chunker
from indexops.settings import ChunkingSettings, DriftSettings

# ---- synthetic corpora ---------------------------------------------------------------------------

HEALTH = ("heart blood pressure artery statin cholesterol vessel cardiac patients dose clinic symptom therapy nurse "
          "diagnosis fever infection vaccine").split()
KITCHEN = ("pasta tomato basil garlic oven dough flour pizza cheese sauce bake recipe onion pepper butter salad "
           "knife simmer").split()
GENERAL = "report result change level daily service support account update issue".split()
# a long tail of rare words (names, codes): new documents always bring some never seen before
_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
RARE = sorted({"".join(np.random.default_rng(i).choice(_LETTERS, 7)) for i in range(3000)})
_RARE_P = 1.0 / np.arange(1, len(RARE) + 1)
_RARE_P /= _RARE_P.sum()


def _doc(rng: np.random.Generator, topic: list[str], n_words: int) -> str:
    """Words of one document are not independent: each document has its own mix of the topic's
    words (a Dirichlet draw around a shared Zipf profile), as real documents have subtopics."""
    zipf = 1.0 / np.arange(1, len(topic) + 1)
    w = 0.4 * zipf / zipf.sum() + 0.6 * rng.dirichlet(np.full(len(topic), 0.3))
    words = list(rng.choice(topic, size=n_words, p=w / w.sum())) + list(rng.choice(GENERAL, size=max(1, n_words // 5)))
    words += list(rng.choice(RARE, size=max(1, n_words // 8), p=_RARE_P))
    rng.shuffle(words)
    sents = [" ".join(words[i: i + 12]) + "." for i in range(0, len(words), 12)]
    return " ".join(sents)


def _docs(seed: int, topic: list[str], n: int, lo: int = 30, hi: int = 160) -> list[str]:
    rng = np.random.default_rng(seed)
    return [_doc(rng, topic, int(rng.integers(lo, hi))) for _ in range(n)]


def _queries(seed: int, topic: list[str], n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(topic[:10], size=3, replace=False)) for _ in range(n)]


EMB = HashingEmbedder(256)  # wide enough that 3-word queries of two topics rarely collide


def _chunk_lengths(docs: list[str], max_tokens: int, tag: str) -> tuple[list[int], list[str]]:
    ch = Chunker(ChunkingSettings(strategy="recursive", max_tokens=max_tokens, overlap_tokens=4, include_title=False),
                 EMB.tokenizer(), tokenizer_id="hashing")
    lengths, groups = [], []
    for i, t in enumerate(docs):
        for c in ch.chunk(f"{tag}{i}", "", t, {}).chunks:
            lengths.append(len(c.text))
            groups.append(f"{tag}{i}")
    return lengths, groups


def _per_query(seed: int, n: int = 40, shift: float = 0.0) -> tuple[dict[str, float], dict[str, float]]:
    """recall-like per-query values of a baseline and a latest run; `shift` lowers the latest's quality."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(0.3, 0.95, size=n)
    base = rng.binomial(4, quality) / 4
    latest = rng.binomial(4, np.clip(quality - shift, 0, 1)) / 4
    return {f"q{i}": float(v) for i, v in enumerate(base)}, {f"q{i}": float(v) for i, v in enumerate(latest)}


KW = {"alpha": 0.05, "warn_alpha": 0.1, "n_perm": 199}


def _retrieval_level(base: dict[str, float], latest: dict[str, float], seed: int) -> tuple[D.Level, float]:
    th = RegressionThresholds(warn_drop=0.01, fail_drop=0.03, alpha=0.05, metrics=["recall@10"])
    comp = paired_comparison(base, latest, metric="recall@10", confidence=0.95, n_resamples=1000, n_permutations=1000, seed=seed)
    lv = {Status.PASS: D.Level.OK, Status.WARN: D.Level.WARN, Status.FAIL: D.Level.ALERT}[judge(comp, th).status]
    return lv, comp.p_value


def _all_tests(seed: int, drift: str | None, kw: dict | None = None) -> dict[str, D.DriftTest]:
    """Every drift test on one seeded pair of samples; `drift` plants one kind of change."""
    KW = kw or globals()["KW"]  # noqa: N806
    base_docs = _docs(1000 + seed, HEALTH, 30)
    other = KITCHEN if drift == "domain" else HEALTH
    new_docs = _docs(5000 + seed, other, 20)
    out: dict[str, D.DriftTest] = {}
    la, ga = _chunk_lengths(base_docs, 48, "a")
    lb, gb = _chunk_lengths(new_docs, 16 if drift == "chunker" else 48, "b")
    out["chunk_length"] = D.length_shift_test(la, lb, groups_a=ga, groups_b=gb, seed=seed, **KW)
    vd = D.vocabulary_drift(base_docs, new_docs, seed=seed, **KW)
    out["vocabulary"], out["oov"] = vd.test, vd.oov_test
    xa, xb = EMB.embed(base_docs), EMB.embed(new_docs)
    out["mmd"] = E.mmd_test(xa, xb, seed=seed, **KW)
    out["classifier"] = E.classifier_test(xa, xb, seed=seed, alpha=KW["alpha"], warn_alpha=KW["warn_alpha"])
    labeled = EMB.embed(_queries(7, HEALTH, 25))
    prod = EMB.embed(_queries(9000 + seed, other, 30))
    out["coverage"] = E.coverage_check(prod, labeled, threshold=0.3, warn_share=0.1, alert_share=0.25)
    out["query_mmd"] = E.mmd_test(labeled, prod, seed=seed, **KW)
    base, latest = _per_query(seed, shift=0.35 if drift == "recall" else 0.0)
    lv, p = _retrieval_level(base, latest, seed)
    out["retrieval"] = D.DriftTest("retrieval recall@10", None, p, lv, "")
    return out


# ---- hand-computed values --------------------------------------------------------------------------


def test_levels_order_and_thresholds():
    assert D.Level.worst(["ok", "n/a", "warn"]) is D.Level.WARN
    assert D.Level.worst([]) is D.Level.NA
    assert D.p_verdict(0.001, 0.01, 0.05) is D.Level.ALERT
    assert D.p_verdict(0.02, 0.01, 0.05) is D.Level.WARN
    assert D.p_verdict(0.5, 0.01, 0.05) is D.Level.OK
    assert D.threshold_verdict(0.3, 0.1, 0.25) is D.Level.ALERT
    assert D.threshold_verdict(0.1, 0.1, 0.25) is D.Level.OK


def test_group_permutations_move_whole_documents():
    idx, n_ga, n_g = D._group_index(4, 3, ["d1", "d1", "d2", "d3"], ["e1", "e1", "e1"])
    assert (n_ga, n_g) == (3, 4)
    masks = D._perm_masks(idx, n_ga, n_g, 200, np.random.default_rng(0))
    assert (masks[:, 0] == masks[:, 1]).all() and (masks[:, 4] == masks[:, 5]).all() and (masks[:, 5] == masks[:, 6]).all()
    # exactly 3 of the 4 groups are on the baseline side in every permutation
    per_group = np.stack([masks[:, 0], masks[:, 2], masks[:, 3], masks[:, 4]], axis=1)
    assert (per_group.sum(axis=1) == 3).all()


def test_ks_statistic_and_permutation_p_value():
    t = D.length_shift_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], n_perm=999, seed=0)
    assert t.statistic == pytest.approx(1.0)
    # exact: 2 of C(10,5)=252 splits reach D=1, p = (hits+1)/(n+1) with hits ~ 999*2/252
    assert t.p_value == pytest.approx((999 * 2 / 252 + 1) / 1000, abs=0.006)
    same = D.length_shift_test([1, 2, 3, 4], [1, 2, 3, 4], n_perm=99)
    assert same.statistic == pytest.approx(0.0) and same.p_value == 1.0 and same.verdict is D.Level.OK
    # ties: [1,1,2] vs [1,2,2] -> CDFs 2/3 vs 1/3 at 1 -> D = 1/3
    assert D.length_shift_test([1, 1, 2], [1, 2, 2], n_perm=19).statistic == pytest.approx(1 / 3)
    assert D.length_shift_test([1], [2, 3]).verdict is D.Level.NA


def test_vocabulary_hand_made_terms_and_oov():
    a = ["apple apple banana", "apple banana banana"]
    b = ["apple cherry cherry", "cherry banana cherry"]
    v = D.vocabulary_drift(a, b, n_perm=99, min_count=1, smoothing=0.5)
    assert v.oov_share == pytest.approx(4 / 6)
    assert v.rising[0]["term"] == "cherry" and v.rising[0]["count_b"] == 4
    # log((4 + .5) / (6 + .5*3)) - log((0 + .5) / (6 + .5*3)) = log(9)
    assert v.rising[0]["log_ratio"] == pytest.approx(math.log(9), abs=1e-4)
    assert {r["term"] for r in v.falling} == {"apple", "banana"}
    assert v.oov_test is not None and v.oov_test.statistic == pytest.approx(4 / 6)
    # the same share is only a finding when it is large against random document splits
    rng = np.random.default_rng(3)
    small = [" ".join(rng.choice(HEALTH, 8)) for _ in range(40)]
    shared = D.vocabulary_drift(small[:30], small[30:], n_perm=199, oov_warn=0.1, oov_alert=0.2).oov_test
    novel = D.vocabulary_drift(small[:30], [" ".join(rng.choice(KITCHEN, 8)) for _ in range(10)], n_perm=199, oov_warn=0.1, oov_alert=0.2).oov_test
    assert shared.verdict is D.Level.OK and novel.verdict is D.Level.ALERT and novel.statistic == pytest.approx(1.0)
    assert D.tokenize("The heart, of the Matter: 42 x") == ["heart", "matter"]
    p = np.array([[1.0, 0.0]])
    q = np.array([[0.0, 1.0]])
    assert D._jsd_rows(p, q)[0] == pytest.approx(1.0)
    assert D._jsd_rows(p, p)[0] == pytest.approx(0.0)


def test_mmd_matches_the_unbiased_estimator_by_hand():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 0.5
    t = E.mmd_test(x, y, n_perm=19)
    z = np.vstack([x, y])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    med = np.median(d2[~np.eye(9, dtype=bool)])
    k = np.exp(-d2 / med)

    def mean_off(block: np.ndarray) -> float:
        n = block.shape[0]
        return (block.sum() - np.trace(block)) / (n * (n - 1))

    expected = mean_off(k[:5, :5]) + mean_off(k[5:, 5:]) - 2 * k[:5, 5:].mean()
    assert t.statistic == pytest.approx(expected, rel=1e-9)


def test_classifier_separable_and_coverage_by_hand():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 4
    c = E.classifier_test(x, y)
    assert c.statistic == pytest.approx(1.0) and c.verdict is D.Level.ALERT and 0.5 < c.extra["auc_threshold"] < 1
    cov = E.coverage_check(np.array([[1.0, 0.1], [-1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), threshold=0.5, warn_share=0.1, alert_share=0.6)
    assert cov.statistic == pytest.approx(0.5) and cov.verdict is D.Level.WARN
    assert cov.extra["nearest"] == [pytest.approx(0.995, abs=1e-3), 0.0]
    assert E.coverage_check(np.zeros((0, 2)), np.ones((2, 2))).verdict is D.Level.NA


def test_projection_is_two_dimensional():
    rng = np.random.default_rng(2)
    p = E.projection_2d(rng.normal(size=(10, 5)), rng.normal(size=(6, 5)))
    assert len(p["a"]) == 10 and len(p["b"]) == 6 and all(len(r) == 2 for r in p["a"])


# ---- synthetic drift alerts in the matching test ---------------------------------------------------


def test_another_domain_batch_alerts_vocabulary_embedding_and_coverage():
    t = _all_tests(0, "domain")
    for name in ("vocabulary", "oov", "mmd", "classifier", "coverage", "query_mmd"):
        assert t[name].verdict is D.Level.ALERT, (name, t[name].reason)
    assert t["retrieval"].verdict is not D.Level.ALERT


def test_chunker_change_alerts_the_chunk_length_test_only():
    t = _all_tests(0, "chunker")
    assert t["chunk_length"].verdict is D.Level.ALERT, t["chunk_length"].reason
    assert t["vocabulary"].verdict is not D.Level.ALERT and t["coverage"].verdict is not D.Level.ALERT


def test_planted_recall_drop_alerts_the_retrieval_check():
    t = _all_tests(0, "recall")
    assert t["retrieval"].verdict is D.Level.ALERT
    assert t["chunk_length"].verdict is not D.Level.ALERT and t["vocabulary"].verdict is not D.Level.ALERT


# ---- false alarms ----------------------------------------------------------------------------------

SEEDS = 20
ALPHA = KW["alpha"]
# 20 seeds give a coarse rate: under the null, alerts ~ Binomial(20, p <= alpha). The allowed
# count is that binomial's 99.9% quantile (5 of 20 at alpha 0.05: margin 0.20), so a calibrated
# test fails this at most 1 run in 1000 while a test that resamples tokens or chunks instead of
# documents (false-alarm rates of 50-100%) cannot pass.
MAX_ALERTS = int(binom.ppf(0.999, SEEDS, ALPHA))
CONFIGURED = DriftSettings()  # the shipped defaults: alert at p < alpha (0.01), warn at p < warn_alpha (0.05)
P_TESTS = ("chunk_length", "vocabulary", "oov", "mmd", "classifier", "query_mmd")


def test_false_alarm_rate_of_every_test_within_its_configured_alpha_plus_margin():
    """Measured at the configured levels: alerts against `drift.alpha` (0.01: allowed 3 of 20,
    the binomial's 99.9% quantile) and, for the p-value tests, warn-or-alert against
    `drift.warn_alpha` (0.05: allowed 5 of 20)."""
    kw = {"alpha": CONFIGURED.alpha, "warn_alpha": CONFIGURED.warn_alpha, "n_perm": 199}
    max_alerts = int(binom.ppf(0.999, SEEDS, CONFIGURED.alpha))
    max_flags = int(binom.ppf(0.999, SEEDS, CONFIGURED.warn_alpha))
    alerts: dict[str, int] = {}
    flags: dict[str, int] = {}
    pvals: dict[str, list[float]] = {}
    for seed in range(SEEDS):
        for name, t in _all_tests(seed, None, kw).items():
            alerts[name] = alerts.get(name, 0) + (t.verdict is D.Level.ALERT)
            flags[name] = flags.get(name, 0) + (t.verdict in (D.Level.ALERT, D.Level.WARN))
            if t.p_value is not None:
                pvals.setdefault(name, []).append(t.p_value)
    rates = {k: v / SEEDS for k, v in alerts.items()}
    print(f"\nfalse-alarm rates over {SEEDS} seeds (alpha {CONFIGURED.alpha}, allowed <= {max_alerts / SEEDS:.2f}): {rates}")
    print(f"warn-or-alert rates (warn_alpha {CONFIGURED.warn_alpha}, allowed <= {max_flags / SEEDS:.2f}):",
          {k: flags[k] / SEEDS for k in P_TESTS})
    print("mean p-values:", {k: round(float(np.mean(v)), 3) for k, v in pvals.items()})
    assert set(rates) == {"chunk_length", "vocabulary", "oov", "mmd", "classifier", "coverage", "query_mmd", "retrieval"}
    for name, n in alerts.items():
        assert n <= max_alerts, f"{name}: {n}/{SEEDS} false alarms, allowed {max_alerts} (alpha {CONFIGURED.alpha} + binomial margin)"
    for name in P_TESTS:
        assert flags[name] <= max_flags, f"{name}: {flags[name]}/{SEEDS} warnings, allowed {max_flags} (warn_alpha + margin)"
    # a calibrated permutation p-value is uniform (or conservative) under the null: mean >= 0.5 - 3 sd
    for name in ("chunk_length", "vocabulary", "oov", "mmd", "classifier", "query_mmd"):
        assert np.mean(pvals[name]) >= 0.5 - 3 * math.sqrt(1 / 12 / SEEDS), (name, pvals[name])


def test_resampling_tokens_instead_of_documents_would_fail_the_false_alarm_check():
    """The reason permutations move documents: a token-level chi-square alarms on no drift."""
    from scipy.stats import chi2_contingency

    alarms = 0
    for seed in range(SEEDS):
        a, b = _docs(1000 + seed, HEALTH, 30), _docs(5000 + seed, HEALTH, 20)
        ca = {w: 0 for w in HEALTH + GENERAL + ["(rare)"]}
        cb = dict(ca)
        for t in a:
            for w in D.tokenize(t):
                ca[w if w in cb else "(rare)"] += 1
        for t in b:
            for w in D.tokenize(t):
                cb[w if w in ca else "(rare)"] += 1
        alarms += chi2_contingency(np.array([list(ca.values()), list(cb.values())]) + 1)[1] < ALPHA
    doc_level = sum(D.vocabulary_drift(_docs(1000 + s, HEALTH, 30), _docs(5000 + s, HEALTH, 20), seed=s, **KW).test.verdict is D.Level.ALERT
                    for s in range(SEEDS))
    print(f"\ntoken-level chi-square false alarms {alarms}/{SEEDS}, document permutation {doc_level}/{SEEDS}")
    assert alarms > MAX_ALERTS >= doc_level
