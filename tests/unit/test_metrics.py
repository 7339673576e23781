"""Retrieval metrics (indexops/eval/metrics.py): hand-computed fixtures, edge cases, the given order
against trec_eval's, and parity with trec_eval through pytrec_eval on random graded runs."""

from __future__ import annotations

import random
from math import log2

import pytest

from indexops.eval.metrics import (
    DEFINITIONS,
    MetricFamily,
    MetricSpec,
    Order,
    evaluate,
    hit_rate,
    lost_relevant,
    mean_average_precision,
    mrr,
    ndcg,
    parse_metric,
    precision,
    rank,
    recall,
)

# Ranked d1 > d2 > d3 > d4 > d5. Relevant: d2 (grade 2), d4 (1) and d9 (1, never retrieved);
# d3 is judged non-relevant (grade 0). So 3 relevant docs, hits at ranks 2 and 4.
RUN = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6, "d5": 0.5}}
QRELS = {"q1": {"d2": 2, "d4": 1, "d9": 1, "d3": 0}}
IDEAL_Q1 = 2 / log2(2) + 1 / log2(3) + 1 / log2(4)  # grades [2, 1, 1] at ranks 1..3


# ---- hand-computed values -----------------------------------------------------------------------


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 1 / 3), (4, 2 / 3), (5, 2 / 3), (100, 2 / 3)])
def test_recall_divides_by_all_relevant_in_qrels(k, expected):
    assert recall(RUN, QRELS, k) == {"q1": pytest.approx(expected)}


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 1 / 2), (4, 2 / 4), (5, 2 / 5), (10, 2 / 10)])
def test_precision_divides_by_k_even_past_the_run(k, expected):
    assert precision(RUN, QRELS, k) == {"q1": pytest.approx(expected)}


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 1 / 2), (10, 1 / 2)])
def test_mrr_is_cut_at_k(k, expected):
    assert mrr(RUN, QRELS, k) == {"q1": pytest.approx(expected)}


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 1.0), (10, 1.0)])
def test_hit_rate(k, expected):
    assert hit_rate(RUN, QRELS, k) == {"q1": expected}


def test_hit_rate_is_zero_when_nothing_relevant_is_retrieved():
    assert hit_rate({"q1": {"d1": 1.0, "d5": 0.5}}, QRELS, 10) == {"q1": 0.0}


def test_ndcg_graded_hand_computed():
    assert ndcg(RUN, QRELS, 5) == {"q1": pytest.approx((2 / log2(3) + 1 / log2(5)) / IDEAL_Q1)}
    # at k=2 the ideal is cut too: grades [2, 1] at ranks 1, 2
    assert ndcg(RUN, QRELS, 2) == {"q1": pytest.approx((2 / log2(3)) / (2 + 1 / log2(3)))}
    assert ndcg(RUN, QRELS, 1) == {"q1": 0.0}


def test_ndcg_gain_is_the_grade_not_exponential():
    # b (grade 1) above a (grade 3): linear gain gives 0.7967, the 2**g - 1 gain would give 0.7098
    value = ndcg({"q": {"b": 2.0, "a": 1.0}}, {"q": {"a": 3, "b": 1}}, 10)["q"]
    assert value == pytest.approx((1 + 3 / log2(3)) / (3 + 1 / log2(3)))
    assert value == pytest.approx(0.796708, abs=1e-6)


def test_ndcg_is_one_for_the_ideal_order_and_ideal_uses_unretrieved_grades():
    assert ndcg({"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"q": {"a": 2, "b": 1}}, 10) == {"q": pytest.approx(1.0)}
    # only the grade-2 doc came back; the ideal still counts both relevant docs (k > run length)
    assert ndcg({"q1": {"d2": 1.0}}, QRELS, 10) == {"q1": pytest.approx(2 / IDEAL_Q1)}


def test_map_uses_all_relevant_in_qrels_as_denominator():
    # precision at rank 2 is 1/2 and at rank 4 is 2/4; d9 is never retrieved and counts 0
    assert mean_average_precision(RUN, QRELS) == {"q1": pytest.approx((1 / 2 + 2 / 4) / 3)}
    assert mean_average_precision({"q": {"a": 1.0}}, {"q": {"a": 1}}) == {"q": 1.0}


def test_evaluate_means_over_queries_and_per_query_values():
    run = {**RUN, "q2": {"x": 1.0, "y": 0.5}}
    qrels = {**QRELS, "q2": {"x": 1}}
    result = evaluate(run, qrels, ["recall@2", "mrr@10"])
    assert result.qids == ["q1", "q2"]
    assert result.per_query["recall@2"] == {"q1": pytest.approx(1 / 3), "q2": 1.0}
    assert result.means == {"recall@2": pytest.approx((1 / 3 + 1) / 2), "mrr@10": pytest.approx((1 / 2 + 1) / 2)}


def test_evaluate_agrees_with_the_single_metric_functions():
    run = {**RUN, "q2": {"x": 1.0, "y": 0.5}}
    qrels = {**QRELS, "q2": {"y": 3, "z": 1}}
    result = evaluate(run, qrels, ["recall@3", "precision@3", "mrr@3", "ndcg@3", "hit_rate@1", "map"])
    assert result.per_query["recall@3"] == recall(run, qrels, 3)
    assert result.per_query["precision@3"] == precision(run, qrels, 3)
    assert result.per_query["mrr@3"] == mrr(run, qrels, 3)
    assert result.per_query["ndcg@3"] == ndcg(run, qrels, 3)
    assert result.per_query["hit_rate@1"] == hit_rate(run, qrels, 1)
    assert result.per_query["map"] == mean_average_precision(run, qrels)


# ---- tie-breaking -------------------------------------------------------------------------------


def test_trec_eval_order_breaks_ties_by_doc_id_descending():
    assert rank({"a": 1.0, "c": 1.0, "b": 1.0}, "trec_eval") == ["c", "b", "a"]
    assert rank({"a": 2.0, "c": 1.0, "b": 1.0}, Order.TREC_EVAL) == ["a", "c", "b"]  # the score comes first
    tied = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}
    assert mrr(tied, {"q": {"a": 1}}, 10, order="trec_eval") == {"q": pytest.approx(1 / 3)}
    assert mrr(tied, {"q": {"c": 1}}, 10, order="trec_eval") == {"q": 1.0}
    assert hit_rate(tied, {"q": {"a": 1}}, 2, order="trec_eval") == {"q": 0.0}


def test_given_order_keeps_tied_documents_where_the_run_put_them():
    """indexops' runs are served rankings: tied scores stay in the served order, not re-sorted."""
    assert rank({"a": 1.0, "c": 1.0, "b": 1.0}) == ["a", "c", "b"]
    tied = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}
    assert mrr(tied, {"q": {"a": 1}}, 10) == {"q": 1.0}
    assert hit_rate(tied, {"q": {"c": 1}}, 2) == {"q": 0.0}
    assert evaluate(tied, {"q": {"b": 1}}, ["mrr@10"]).means["mrr@10"] == pytest.approx(1 / 2)
    assert lost_relevant(tied, {"q": {"c": 1.0, "b": 1.0, "a": 1.0}}, {"q": {"a": 1}}, 1) == {"q": ["a"]}


def test_given_order_refuses_a_mapping_that_is_not_a_ranking():
    with pytest.raises(ValueError, match="trec_eval"):
        evaluate({"q": {"a": 0.5, "b": 0.9}}, {"q": {"a": 1}}, ["ndcg@10"])
    with pytest.raises(ValueError, match="not a valid Order"):
        rank({"a": 1.0}, "sorted")


# ---- zero-division and edge cases ---------------------------------------------------------------


def test_query_without_relevant_docs_is_not_evaluated():
    qrels = {**QRELS, "q0": {"d1": 0, "d2": 0}}
    run = {**RUN, "q0": {"d1": 1.0}}
    result = evaluate(run, qrels, ["recall@5", "ndcg@5", "map"])
    assert result.qids == ["q1"]
    assert result.means["recall@5"] == pytest.approx(2 / 3)
    assert recall(run, qrels, 5).keys() == {"q1"}


def test_qrels_without_any_relevant_doc_raise_instead_of_dividing_by_zero():
    with pytest.raises(ValueError, match="no query"):
        evaluate(RUN, {"q1": {"d1": 0}}, ["recall@10"])
    assert recall(RUN, {"q1": {"d1": 0}}, 10) == {}


def test_empty_run_scores_zero_everywhere():
    metrics = ["recall@10", "precision@10", "mrr@10", "ndcg@10", "hit_rate@10", "map"]
    for run in ({}, {"q1": {}}):
        result = evaluate(run, QRELS, metrics)
        assert result.means == {m: 0.0 for m in metrics}
    assert evaluate({}, QRELS, ["map"]).missing_from_run == ["q1"]


def test_query_missing_from_run_scores_zero_and_run_only_queries_are_ignored():
    run = {"q1": RUN["q1"], "stray": {"d1": 1.0}}
    qrels = {**QRELS, "q2": {"x": 1}}
    result = evaluate(run, qrels, ["hit_rate@10"])
    assert result.per_query["hit_rate@10"] == {"q1": 1.0, "q2": 0.0}
    assert result.missing_from_run == ["q2"]
    assert result.means["hit_rate@10"] == 0.5


def test_k_larger_than_the_run():
    result = evaluate(RUN, QRELS, ["recall@1000", "precision@1000", "mrr@1000", "ndcg@1000", "hit_rate@1000"])
    assert result.means == {
        "recall@1000": pytest.approx(2 / 3),
        "precision@1000": pytest.approx(2 / 1000),
        "mrr@1000": pytest.approx(1 / 2),
        "ndcg@1000": pytest.approx((2 / log2(3) + 1 / log2(5)) / IDEAL_Q1),
        "hit_rate@1000": 1.0,
    }


# ---- names, validation, result shape ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("ndcg@10", MetricSpec(MetricFamily.NDCG, 10)),
        ("recall@100", MetricSpec(MetricFamily.RECALL, 100)),
        ("mrr@10", MetricSpec(MetricFamily.MRR, 10)),
        ("precision@5", MetricSpec(MetricFamily.PRECISION, 5)),
        ("hit_rate@10", MetricSpec(MetricFamily.HIT_RATE, 10)),
        ("map", MetricSpec(MetricFamily.MAP)),
        (" NDCG@10 ", MetricSpec(MetricFamily.NDCG, 10)),
    ],
)
def test_parse_metric(name, spec):
    assert parse_metric(name) == spec
    assert parse_metric(spec.name) == spec


@pytest.mark.parametrize(
    "name", ["ndcg@0", "recall@-1", "ndcg", "ndcg@", "ndcg@ten", "recall@1.5", "map@10", "f1@10", "bleu", ""]
)
def test_parse_metric_rejects(name):
    with pytest.raises(ValueError):
        parse_metric(name)


@pytest.mark.parametrize("fn", [recall, precision, mrr, ndcg, hit_rate])
@pytest.mark.parametrize("k", [0, -3])
def test_public_functions_check_k(fn, k):
    with pytest.raises(ValueError, match="k must be"):
        fn(RUN, QRELS, k)


def test_lost_relevant_checks_k():
    with pytest.raises(ValueError, match="k must be"):
        lost_relevant(RUN, RUN, QRELS, 0)


@pytest.mark.parametrize("metrics", [[], ["ndcg@10", "nope@3"], "ndcg@10"])
def test_evaluate_rejects_bad_metric_lists(metrics):
    with pytest.raises(ValueError):
        evaluate(RUN, QRELS, metrics)


@pytest.mark.parametrize(
    ("run", "qrels"),
    [
        ({"q1": {"d1": float("nan")}}, QRELS),
        ({"q1": {"d1": "high"}}, QRELS),
        ({"q1": ["d1"]}, QRELS),
        (RUN, {"q1": {"d2": 1.5}}),
        (RUN, {"q1": ["d2"]}),
    ],
)
def test_malformed_inputs_raise(run, qrels):
    with pytest.raises(ValueError):
        evaluate(run, qrels, ["recall@10"])


def test_result_carries_definitions_and_canonical_names():
    result = evaluate(RUN, QRELS, ["NDCG@10", "ndcg@10", "map", "recall@5"])
    assert list(result.means) == ["ndcg@10", "map", "recall@5"]
    d = result.to_dict()
    assert d["definitions"] == {f: DEFINITIONS[f] for f in ("ndcg", "map", "recall")}
    assert d["n_queries"] == 1 and d["qids"] == ["q1"]
    assert d["per_query"]["map"] == {"q1": pytest.approx(1 / 3)}
    assert set(DEFINITIONS) == {f.value for f in MetricFamily}
    assert all(text.strip() for text in DEFINITIONS.values())


# ---- lost relevant ------------------------------------------------------------------------------


def test_lost_relevant_lists_relevant_docs_that_fell_out_of_the_top_k():
    baseline = {"q1": {"d2": 0.9, "d4": 0.8, "d1": 0.7}, "q2": {"x": 1.0}}
    candidate = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6}, "q2": {"x": 1.0}}
    # d4 fell from rank 2 to rank 4; d1 (not relevant) moving does not count; q2 lost nothing
    assert lost_relevant(baseline, candidate, {**QRELS, "q2": {"x": 1}}, 2) == {"q1": ["d4"]}
    assert lost_relevant(baseline, candidate, QRELS, 4) == {}
    assert lost_relevant(baseline, {}, QRELS, 3) == {"q1": ["d2", "d4"]}  # baseline rank order


# ---- parity with trec_eval ----------------------------------------------------------------------


def _random_case(seed: int, n_queries: int = 50):
    rng = random.Random(seed)
    pool = [f"d{i:03d}" for i in range(40)]
    run, qrels = {}, {}
    for i in range(n_queries):
        qid = f"q{i:02d}"
        judged = rng.sample(pool, rng.randint(1, 15))
        grades = {d: rng.choice([0, 0, 1, 1, 2, 3]) for d in judged}
        if not any(grades.values()):
            grades[judged[0]] = rng.randint(1, 3)
        qrels[qid] = grades
        if i % 10 == 9:
            continue  # a query the run has no results for
        # scores on a 0.05 grid, so ties are frequent and the tie-break matters
        run[qid] = {d: round(rng.randint(0, 20) * 0.05, 2) for d in rng.sample(pool, rng.randint(1, 30))}
    qrels["q_no_rel"] = {"d000": 0, "d001": 0}
    run["q_no_rel"] = {"d000": 1.0}
    return run, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_pytrec_eval(seed):
    import pytrec_eval  # test extra; a missing install should fail, not skip

    run, qrels = _random_case(seed)
    measures = {"recall.10", "recall.100", "P.10", "recip_rank", "ndcg_cut.10", "map"}
    trec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = evaluate(run, qrels, ["recall@10", "recall@100", "precision@10", "mrr@1000", "ndcg@10", "map"], order="trec_eval")
    pairs = {
        "recall@10": "recall_10",
        "recall@100": "recall_100",
        "precision@10": "P_10",
        "mrr@1000": "recip_rank",
        "ndcg@10": "ndcg_cut_10",
        "map": "map",
    }
    assert "q_no_rel" not in ours.qids and len(ours.qids) == 50
    assert set(trec) - {"q_no_rel"} == set(ours.qids) - set(ours.missing_from_run)
    assert len(ours.missing_from_run) == 5
    compared = 0
    for qid in ours.qids:
        for name, trec_name in pairs.items():
            expected = trec[qid][trec_name] if qid in trec else 0.0
            assert ours.per_query[name][qid] == pytest.approx(expected, abs=1e-6), (qid, name)
            compared += 1
    assert compared == 50 * len(pairs)
    # the fixture is not degenerate: the metrics take many distinct values
    assert len({round(v, 6) for v in ours.per_query["ndcg@10"].values()}) > 20
