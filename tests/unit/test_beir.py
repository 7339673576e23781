"""TREC run files (indexops/eval/beir.py): the run's own order, scores strictly decreasing with
rank, so trec_eval ranks a file as indexops served and scored it, tied scores included."""

from __future__ import annotations

import pytest

from indexops.eval.beir import trec_scores, write_trec_run
from indexops.eval.metrics import evaluate

# served order, with ties (equal RRF scores) and two scores equal at 6 decimals
RUN = {
    "q1": {"d3": 0.05, "d1": 0.05, "d9": 0.05, "d2": 0.04761904, "d7": 0.0476190, "d4": 0.04},
    "q2": {"b": 1.0, "a": 1.0},
}
QRELS = {"q1": {"d9": 2, "d1": 1, "d4": 1}, "q2": {"a": 1}}


def _read(path):
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(q, d, int(r), float(s)) for q, _q0, d, r, s, _name in rows]


def test_run_file_keeps_the_order_and_scores_strictly_decrease_with_rank(tmp_path):
    write_trec_run(tmp_path / "hybrid.trec", RUN, "indexops-hybrid")
    rows = _read(tmp_path / "hybrid.trec")
    for q, docs in RUN.items():
        mine = [r for r in rows if r[0] == q]
        assert [d for _, d, _, _ in mine] == list(docs)
        assert [r for _, _, r, _ in mine] == list(range(1, len(docs) + 1))
        scores = [s for *_, s in mine]
        assert all(a > b for a, b in zip(scores, scores[1:])), scores


def test_trec_eval_on_the_file_reproduces_the_reported_figures(tmp_path):
    import pytrec_eval

    write_trec_run(tmp_path / "hybrid.trec", RUN, "indexops-hybrid")
    file_run: dict[str, dict[str, float]] = {}
    for q, d, _r, s in _read(tmp_path / "hybrid.trec"):
        file_run.setdefault(q, {})[d] = s
    trec = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut.10", "recip_rank"}).evaluate(file_run)
    ours = evaluate(RUN, QRELS, ["ndcg@10", "mrr@10"])  # the served order, as eval reports it
    for q in QRELS:
        assert trec[q]["ndcg_cut_10"] == pytest.approx(ours.per_query["ndcg@10"][q], abs=1e-9)
        assert trec[q]["recip_rank"] == pytest.approx(ours.per_query["mrr@10"][q], abs=1e-9)
    assert ours.per_query["mrr@10"]["q2"] == 0.5  # trec_eval's own tie-break would put "b" second


def test_trec_scores_only_move_where_needed():
    assert trec_scores([0.5, 0.4, 0.3]) == [0.5, 0.4, 0.3]
    assert trec_scores([0.5, 0.5, 0.5, 0.4999995]) == [0.5, 0.499999, 0.499998, 0.499997]
