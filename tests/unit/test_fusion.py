"""Hybrid fusion (indexops/store/fusion.py) on hand-made lists: Qdrant's RRF scores, and a total,
deterministic order in which tied scores break by best position, then sparse score, then point id."""

from __future__ import annotations

import random

import pytest

from indexops.store.fusion import TIE_BREAKS, by_score, rrf
from indexops.store.protocol import Hit


def _hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(p, s, {"doc_id": p}) for p, s in pairs]


def _ids(hits: list[Hit]) -> list[str]:
    return [h.point_id for h in hits]


def test_scores_are_weight_over_k_plus_zero_based_position():
    dense = _hits(("a", 0.9), ("b", 0.8))
    sparse = _hits(("b", 7.0), ("c", 3.0))
    fused = {h.point_id: h.score for h in rrf(dense, sparse, 10, k=20)}
    assert fused == {"a": pytest.approx(1 / 20), "b": pytest.approx(1 / 21 + 1 / 20), "c": pytest.approx(1 / 21)}
    weighted = {h.point_id: h.score for h in rrf(dense, sparse, 10, k=20, weights=[2.0, 1.0])}
    assert weighted == {"a": pytest.approx(2 / 20), "b": pytest.approx(2 / 21 + 1 / 20), "c": pytest.approx(1 / 21)}


def test_first_in_one_list_only_ties_at_one_over_k_and_the_sparse_first_wins():
    dense = _hits(("d", 0.9), ("x", 0.5))
    sparse = _hits(("s", 9.0), ("x", 1.0))
    fused = rrf(dense, sparse, 10, k=20)
    assert fused[1].score == fused[2].score == 1 / 20  # exactly equal: the tie the issue is about
    assert _ids(fused) == ["x", "s", "d"]  # best position 0 both; s has a sparse score, d none
    assert _ids(rrf(dense, sparse, 10, k=20, tie_break="best_rank_dense")) == ["x", "d", "s"]


def test_swapped_positions_tie_and_break_by_sparse_score():
    # a at (0, 1), b at (1, 0): 1/20 + 1/21 both; best position 0 both; b is the better BM25 match
    dense = _hits(("a", 0.9), ("b", 0.8))
    sparse = _hits(("b", 5.0), ("a", 4.0))
    fused = rrf(dense, sparse, 10, k=20)
    assert fused[0].score == fused[1].score
    assert _ids(fused) == ["b", "a"]
    assert _ids(rrf(dense, sparse, 10, k=20, tie_break="best_rank_dense")) == ["a", "b"]


def test_best_position_comes_before_the_sparse_score():
    # x at (dense 1, sparse 8) and y at (4, 4): 1/21 + 1/28 == 2/24 exactly in floating point.
    # x's best position (1) beats y's (4) although y is the better BM25 match.
    dense = _hits(("d0", 0.99), ("x", 0.98), ("d2", 0.97), ("d3", 0.96), ("y", 0.95))
    sparse = _hits(*[(f"s{i}", 9.0 - i / 10) for i in range(4)], ("y", 8.0), *[(f"t{i}", 7.0 - i / 10) for i in range(3)], ("x", 6.0))
    fused = rrf(dense, sparse, 20, k=20)
    scores = {h.point_id: h.score for h in fused}
    assert scores["x"] == scores["y"]
    order = _ids(fused)
    assert order.index("x") + 1 == order.index("y")


def test_point_id_is_the_last_key():
    # equal sparse scores (sparse positions 0 and 1 by point id), swapped in dense: every key but the id ties
    dense = _hits(("n", 0.9), ("m", 0.5))
    sparse = _hits(("m", 1.0), ("n", 1.0))
    assert _ids(rrf(dense, sparse, 10)) == ["m", "n"]
    assert _ids(rrf(dense, list(reversed(sparse)), 10)) == ["m", "n"]  # the store's order of ties does not matter


def test_the_order_is_total_and_does_not_depend_on_the_input_order():
    rng = random.Random(7)
    dense = _hits(*[(f"c{i:02d}", round(rng.random(), 1)) for i in range(40)])
    sparse = _hits(*[(f"c{i:02d}", float(rng.randint(0, 5))) for i in rng.sample(range(60), 30)])
    want = rrf(dense, sparse, 50)
    for _ in range(5):
        rng.shuffle(dense)
        rng.shuffle(sparse)
        got = rrf(dense, sparse, 50)
        assert _ids(got) == _ids(want) and [h.score for h in got] == [h.score for h in want]
    assert len({h.score for h in want}) < len(want)  # not degenerate: there are ties to break
    assert len(rrf(dense, sparse, 5)) == 5


def test_by_score_orders_ties_by_point_id():
    assert _ids(by_score(_hits(("b", 1.0), ("c", 2.0), ("a", 1.0)))) == ["c", "a", "b"]


@pytest.mark.parametrize("kwargs", [{"tie_break": "random"}, {"weights": [1.0]}, {"weights": [1.0, 0.0]}, {"k": 0}])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        rrf(_hits(("a", 1.0)), [], 5, **kwargs)


def test_every_tie_break_is_a_total_order():
    dense = _hits(("a", 0.5), ("b", 0.5), ("c", 0.4))
    sparse = _hits(("c", 3.0), ("b", 2.0), ("a", 1.0))
    for name in TIE_BREAKS:
        assert sorted(_ids(rrf(dense, sparse, 10, tie_break=name))) == ["a", "b", "c"]
