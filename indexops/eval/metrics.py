"""Retrieval metrics as pure functions over a run `{qid: {doc_id: score}}` and graded qrels
`{qid: {doc_id: grade}}`, with trec_eval's definitions so numbers agree with published ones.

Conventions (shared by every metric here):

* A document is relevant when its grade is > 0; nDCG's gain is the grade itself.
* A run is ranked in its own order (`Order.GIVEN`, the default): indexops' runs list each query's
  documents as `search` serves them, ties included, and must not re-sort them; the scores must not
  increase along that order. `Order.TREC_EVAL` ranks external runs as trec_eval does: score
  descending, ties broken by doc_id descending (string order).
* The evaluated queries are the qids in the qrels with at least one relevant document; a qid in
  the run but not in the qrels is ignored, and a qid in the qrels missing from the run scores 0.
* Denominators never divide by zero: a query without relevant documents is not evaluated, and
  precision@k divides by k (as trec_eval's `P_k`) even when fewer than k documents came back.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

__all__ = [
    "DEFINITIONS",
    "EvalResult",
    "MetricFamily",
    "MetricSpec",
    "Order",
    "evaluate",
    "hit_rate",
    "lost_relevant",
    "mean_average_precision",
    "mrr",
    "ndcg",
    "parse_metric",
    "precision",
    "rank",
    "recall",
]


class MetricFamily(str, Enum):
    """The metric families `parse_metric` understands; all but MAP take a cut-off k."""

    RECALL = "recall"
    PRECISION = "precision"
    MRR = "mrr"
    NDCG = "ndcg"
    HIT_RATE = "hit_rate"
    MAP = "map"

    @staticmethod
    def from_str(name: str) -> MetricFamily:
        """The family called `name` (case-insensitive).

        Raises:
            ValueError: if no family has that name.
        """
        try:
            return MetricFamily(name.strip().lower())
        except ValueError:
            known = ", ".join(f.value for f in MetricFamily)
            raise ValueError(f"unknown metric family {name!r}; known: {known}") from None


class Order(str, Enum):
    """How a query's `{doc_id: score}` becomes a ranked list (`Order("trec_eval")` parses a name)."""

    GIVEN = "given"  # the mapping's own order (a served ranking), scores non-increasing along it
    TREC_EVAL = "trec_eval"  # score descending, then doc_id descending, whatever the mapping's order


DEFINITIONS: dict[str, str] = {
    MetricFamily.RECALL.value: "recall@k: relevant documents in the top k divided by all relevant documents in the qrels.",
    MetricFamily.PRECISION.value: "precision@k: relevant documents in the top k divided by k (even when fewer than k were retrieved).",
    MetricFamily.MRR.value: "mrr@k: 1/rank of the first relevant document within the top k, 0 if there is none.",
    MetricFamily.NDCG.value: (
        "ndcg@k: DCG of the top k (gain = grade, discount = log2(rank + 1)) divided by the DCG of the "
        "qrels' grades sorted best first and cut at k (trec_eval ndcg_cut)."
    ),
    MetricFamily.HIT_RATE.value: "hit_rate@k: 1 if any relevant document is in the top k, else 0.",
    MetricFamily.MAP.value: (
        "map: mean over relevant documents in the qrels of the precision at each one's rank in the whole run "
        "(0 for those not retrieved), i.e. trec_eval map."
    ),
}


@dataclass(frozen=True)
class MetricSpec:
    """One parsed metric name: a family and, for every family but MAP, a cut-off k >= 1."""

    family: MetricFamily
    k: int | None = None

    @property
    def name(self) -> str:
        """Canonical name, e.g. `ndcg@10` or `map`."""
        return self.family.value if self.k is None else f"{self.family.value}@{self.k}"

    def __str__(self) -> str:
        return self.name


def parse_metric(name: str) -> MetricSpec:
    """Parse a metric name such as `ndcg@10`, `recall@100`, `mrr@10`, `precision@5`, `hit_rate@10`
    or `map` (case-insensitive, surrounding spaces ignored).

    Args:
        name: The metric name.

    Returns:
        The family and cut-off.

    Raises:
        ValueError: on an unknown family, a missing or non-integer k, k < 1, or a k given to `map`.
    """
    if not isinstance(name, str):
        raise ValueError(f"metric name must be a string, got {type(name).__name__}")
    family_name, sep, k_text = name.strip().partition("@")
    family = MetricFamily.from_str(family_name)
    if family is MetricFamily.MAP:
        if sep:
            raise ValueError(f"{name!r}: map is computed over the whole run and takes no @k")
        return MetricSpec(family)
    if not sep:
        raise ValueError(f"{name!r}: {family.value} needs a cut-off, e.g. {family.value}@10")
    k_text = k_text.strip()
    if not k_text.isdigit():
        raise ValueError(f"{name!r}: k must be a positive integer")
    k = int(k_text)
    _check_k(k)
    return MetricSpec(family, k)


# ---- kernels: one query, a ranked list of doc ids and its relevant docs (grade > 0) ------------


def _recall(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    if not rels:
        return 0.0
    return sum(1 for d in ranked[:k] if d in rels) / len(rels)


def _precision(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    return sum(1 for d in ranked[:k] if d in rels) / k


def _mrr(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k], start=1):
        if d in rels:
            return 1.0 / i
    return 0.0


def _hit_rate(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    return 1.0 if any(d in rels for d in ranked[:k]) else 0.0


def _dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1) if g)


def _ndcg(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    ideal = _dcg(sorted(rels.values(), reverse=True)[:k])
    if ideal == 0.0:
        return 0.0
    return _dcg([rels.get(d, 0) for d in ranked[:k]]) / ideal


def _average_precision(ranked: Sequence[str], rels: Mapping[str, int], k: int | None = None) -> float:
    if not rels:
        return 0.0
    hits, total = 0, 0.0
    for i, d in enumerate(ranked, start=1):
        if d in rels:
            hits += 1
            total += hits / i
    return total / len(rels)


_KERNELS: dict[MetricFamily, Callable[[Sequence[str], Mapping[str, int], Any], float]] = {
    MetricFamily.RECALL: _recall,
    MetricFamily.PRECISION: _precision,
    MetricFamily.MRR: _mrr,
    MetricFamily.NDCG: _ndcg,
    MetricFamily.HIT_RATE: _hit_rate,
    MetricFamily.MAP: _average_precision,
}


# ---- input checks and shared plumbing -----------------------------------------------------------


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _check_run(run: Run) -> None:
    if not isinstance(run, Mapping):
        raise ValueError(f"run must be a mapping {{qid: {{doc_id: score}}}}, got {type(run).__name__}")
    for qid, docs in run.items():
        if not isinstance(docs, Mapping):
            raise ValueError(f"run[{qid!r}] must be a mapping {{doc_id: score}}, got {type(docs).__name__}")
        for doc_id, score in docs.items():
            # NaN has no place in an order; a bool is almost certainly a bug upstream.
            if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
                raise ValueError(f"run[{qid!r}][{doc_id!r}]: score must be a finite number, got {score!r}")


def _check_qrels(qrels: Qrels) -> None:
    if not isinstance(qrels, Mapping):
        raise ValueError(f"qrels must be a mapping {{qid: {{doc_id: grade}}}}, got {type(qrels).__name__}")
    for qid, docs in qrels.items():
        if not isinstance(docs, Mapping):
            raise ValueError(f"qrels[{qid!r}] must be a mapping {{doc_id: grade}}, got {type(docs).__name__}")
        for doc_id, grade in docs.items():
            if isinstance(grade, bool) or not isinstance(grade, numbers.Integral):
                raise ValueError(f"qrels[{qid!r}][{doc_id!r}]: grade must be an int, got {grade!r}")


def rank(scores: Mapping[str, float], order: Order | str = Order.GIVEN) -> list[str]:
    """Doc ids of one query's results, best first: in `given` order the mapping's own (ties as
    served), in `trec_eval` order by score descending, then doc_id descending.

    Raises:
        ValueError: on an unknown order; in `given` order, when a score is higher than the one
            before it (the mapping is not a ranking; an external run wants `trec_eval`).
    """
    if Order(order) is Order.TREC_EVAL:
        return [d for d, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]
    ranked = list(scores)
    for prev, d in zip(ranked, ranked[1:]):
        if scores[d] > scores[prev]:
            raise ValueError(f"{d!r} scores {scores[d]!r} after {prev!r} with {scores[prev]!r}: not a ranking in the given "
                             "order (rank an external run with order='trec_eval')")
    return ranked


def _relevant(qrels: Qrels) -> dict[str, dict[str, int]]:
    """Per evaluated query, its relevant docs and grades; queries without any are left out."""
    out: dict[str, dict[str, int]] = {}
    for qid, docs in qrels.items():
        rels = {d: g for d, g in docs.items() if g > 0}
        if rels:
            out[qid] = rels
    return out


def _per_query(run: Run, qrels: Qrels, spec: MetricSpec, order: Order | str) -> dict[str, float]:
    _check_run(run)
    _check_qrels(qrels)
    kernel = _KERNELS[spec.family]
    return {qid: kernel(rank(run.get(qid, {}), order), rels, spec.k) for qid, rels in _relevant(qrels).items()}


# ---- public per-metric functions ----------------------------------------------------------------


def recall(run: Run, qrels: Qrels, k: int, order: Order | str = Order.GIVEN) -> dict[str, float]:
    """Recall at k per evaluated query: relevant docs in the top k / all relevant docs in the qrels.

    Args:
        run: `{qid: {doc_id: score}}`.
        qrels: `{qid: {doc_id: grade}}`; grade > 0 is relevant.
        k: Cut-off, >= 1.
        order: How each query's scores rank (`given` or `trec_eval`, see `rank`).

    Returns:
        `{qid: value}` over the qids in the qrels with a relevant document.

    Raises:
        ValueError: if k < 1 or the inputs are malformed.
    """
    _check_k(k)
    return _per_query(run, qrels, MetricSpec(MetricFamily.RECALL, k), order)


def precision(run: Run, qrels: Qrels, k: int, order: Order | str = Order.GIVEN) -> dict[str, float]:
    """Precision at k per evaluated query: relevant docs in the top k / k (k, not the number
    retrieved, as trec_eval's `P_k`).

    Args:
        run: `{qid: {doc_id: score}}`.
        qrels: `{qid: {doc_id: grade}}`; grade > 0 is relevant.
        k: Cut-off, >= 1.
        order: How each query's scores rank (`given` or `trec_eval`, see `rank`).

    Returns:
        `{qid: value}` over the qids in the qrels with a relevant document.

    Raises:
        ValueError: if k < 1 or the inputs are malformed.
    """
    _check_k(k)
    return _per_query(run, qrels, MetricSpec(MetricFamily.PRECISION, k), order)


def mrr(run: Run, qrels: Qrels, k: int, order: Order | str = Order.GIVEN) -> dict[str, float]:
    """Reciprocal rank per evaluated query: 1/rank of the first relevant doc within the top k,
    else 0. With k >= the run length this equals trec_eval's (uncut) `recip_rank`.

    Args:
        run: `{qid: {doc_id: score}}`.
        qrels: `{qid: {doc_id: grade}}`; grade > 0 is relevant.
        k: Cut-off, >= 1.
        order: How each query's scores rank (`given` or `trec_eval`, see `rank`).

    Returns:
        `{qid: value}` over the qids in the qrels with a relevant document.

    Raises:
        ValueError: if k < 1 or the inputs are malformed.
    """
    _check_k(k)
    return _per_query(run, qrels, MetricSpec(MetricFamily.MRR, k), order)


def ndcg(run: Run, qrels: Qrels, k: int, order: Order | str = Order.GIVEN) -> dict[str, float]:
    """nDCG at k per evaluated query, trec_eval's `ndcg_cut`: DCG = sum of grade / log2(rank + 1)
    over the top k, divided by the same sum over the qrels' grades sorted best first and cut at k.

    Args:
        run: `{qid: {doc_id: score}}`.
        qrels: `{qid: {doc_id: grade}}`; grade > 0 is relevant and is the gain.
        k: Cut-off, >= 1.
        order: How each query's scores rank (`given` or `trec_eval`, see `rank`).

    Returns:
        `{qid: value}` over the qids in the qrels with a relevant document.

    Raises:
        ValueError: if k < 1 or the inputs are malformed.
    """
    _check_k(k)
    return _per_query(run, qrels, MetricSpec(MetricFamily.NDCG, k), order)


def hit_rate(run: Run, qrels: Qrels, k: int, order: Order | str = Order.GIVEN) -> dict[str, float]:
    """Hit rate at k per evaluated query: 1 if any relevant doc is in the top k, else 0.

    Args:
        run: `{qid: {doc_id: score}}`.
        qrels: `{qid: {doc_id: grade}}`; grade > 0 is relevant.
        k: Cut-off, >= 1.
        order: How each query's scores rank (`given` or `trec_eval`, see `rank`).

    Returns:
        `{qid: value}` over the qids in the qrels with a relevant document.

    Raises:
        ValueError: if k < 1 or the inputs are malformed.
    """
    _check_k(k)
    return _per_query(run, qrels, MetricSpec(MetricFamily.HIT_RATE, k), order)


def mean_average_precision(run: Run, qrels: Qrels, order: Order | str = Order.GIVEN) -> dict[str, float]:
    """Average precision per evaluated query (trec_eval `map`): the sum of precision at the rank
    of each relevant doc retrieved anywhere in the run, divided by the number of relevant docs
    in the qrels (so unretrieved relevant docs count as 0).

    Args:
        run: `{qid: {doc_id: score}}`.
        qrels: `{qid: {doc_id: grade}}`; grade > 0 is relevant.
        order: How each query's scores rank (`given` or `trec_eval`, see `rank`).

    Returns:
        `{qid: value}` over the qids in the qrels with a relevant document.

    Raises:
        ValueError: if the inputs are malformed.
    """
    return _per_query(run, qrels, MetricSpec(MetricFamily.MAP), order)


# ---- evaluate ----------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """Per-metric means and per-query values of one run against one set of qrels.

    Attributes:
        means: `{metric: mean over the evaluated queries}`.
        per_query: `{metric: {qid: value}}`; every metric has the same qids.
        qids: The evaluated queries (qrels qids with a relevant document), sorted.
        missing_from_run: Evaluated qids absent from the run (they scored 0 everywhere).
        definitions: `{metric family: one-sentence definition}` for the families in `means`.
    """

    means: dict[str, float]
    per_query: dict[str, dict[str, float]]
    qids: list[str]
    missing_from_run: list[str] = field(default_factory=list)
    definitions: dict[str, str] = field(default_factory=dict)

    @property
    def n_queries(self) -> int:
        return len(self.qids)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: means, per-query values, query counts and the metric definitions."""
        return {
            "means": dict(self.means),
            "per_query": {m: dict(v) for m, v in self.per_query.items()},
            "n_queries": self.n_queries,
            "qids": list(self.qids),
            "missing_from_run": list(self.missing_from_run),
            "definitions": dict(self.definitions),
        }


def evaluate(run: Run, qrels: Qrels, metrics: list[str], order: Order | str = Order.GIVEN) -> EvalResult:
    """Score a run against qrels on several metrics at once (each query is ranked once).

    Args:
        run: `{qid: {doc_id: score}}`; qids absent from the qrels are ignored.
        qrels: `{qid: {doc_id: grade}}`; grade > 0 is relevant.
        metrics: Names such as `["ndcg@10", "recall@100", "map"]`; duplicates are folded and
            names are canonicalised (`NDCG@10` -> `ndcg@10`).
        order: How each query's scores rank: `given` (the run's order, as served) or `trec_eval`.

    Returns:
        An `EvalResult` with the mean and per-query value of every metric and the definitions.

    Raises:
        ValueError: on an empty or unknown metric list, malformed inputs, or qrels in which no
            query has a relevant document (every mean would be 0/0).
    """
    if isinstance(metrics, str) or not metrics:
        raise ValueError("metrics must be a non-empty list of names, e.g. ['ndcg@10']")
    specs = list(dict.fromkeys(parse_metric(m) for m in metrics))
    order = Order(order)
    _check_run(run)
    _check_qrels(qrels)
    relevant = _relevant(qrels)
    if not relevant:
        raise ValueError("no query in the qrels has a relevant document (grade > 0): nothing to evaluate")

    qids = sorted(relevant)
    per_query: dict[str, dict[str, float]] = {s.name: {} for s in specs}
    for qid in qids:
        ranked = rank(run.get(qid, {}), order)
        for s in specs:
            per_query[s.name][qid] = _KERNELS[s.family](ranked, relevant[qid], s.k)
    means = {name: math.fsum(values.values()) / len(qids) for name, values in per_query.items()}
    families = dict.fromkeys(s.family.value for s in specs)
    return EvalResult(
        means=means,
        per_query=per_query,
        qids=qids,
        missing_from_run=[q for q in qids if q not in run],
        definitions={f: DEFINITIONS[f] for f in families},
    )


def lost_relevant(baseline_run: Run, candidate_run: Run, qrels: Qrels, k: int, order: Order | str = Order.GIVEN) -> dict[str, list[str]]:
    """Relevant docs the baseline had in its top k that the candidate no longer has in its top k
    -- the concrete evidence behind a recall or nDCG drop.

    Args:
        baseline_run: `{qid: {doc_id: score}}` of the reference index.
        candidate_run: `{qid: {doc_id: score}}` of the index under test.
        qrels: `{qid: {doc_id: grade}}`; grade > 0 is relevant.
        k: Cut-off, >= 1.
        order: How each query's scores rank (`given` or `trec_eval`, see `rank`).

    Returns:
        `{qid: [doc_id, ...]}` in baseline rank order, only for evaluated queries that lost any.

    Raises:
        ValueError: if k < 1 or the inputs are malformed.
    """
    _check_k(k)
    _check_run(baseline_run)
    _check_run(candidate_run)
    _check_qrels(qrels)
    out: dict[str, list[str]] = {}
    for qid, rels in sorted(_relevant(qrels).items()):
        kept = set(rank(candidate_run.get(qid, {}), order)[:k])
        lost = [d for d in rank(baseline_run.get(qid, {}), order)[:k] if d in rels and d not in kept]
        if lost:
            out[qid] = lost
    return out
