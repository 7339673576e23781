"""The regression gate: a stored candidate eval against a pinned baseline eval, per metric a
paired comparison, the queries that lost relevant documents, and what in the recipe changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indexops.eval.metrics import lost_relevant
from indexops.eval.regression import RegressionThresholds, Status, Verdict, regression_verdict
from indexops.ledger import Ledger
from indexops.settings import RegressionSettings

_RECIPE_KEYS = ("model", "model_fingerprint", "chunker", "bm25", "retriever", "index_recipe_hash")


@dataclass
class GateReport:
    status: str
    baseline_eval: str
    candidate_eval: str
    baseline_snapshot: str
    candidate_snapshot: str
    retriever: str
    verdict: dict[str, Any]
    lost: dict[str, list[str]] = field(default_factory=dict)
    recipe_changes: list[str] = field(default_factory=list)
    vendor_drift: bool = False
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _by_metric(per_query: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for q, ms in per_query.items():
        for m, v in ms.items():
            out.setdefault(m, {})[q] = v
    return out


def recipe_changes(base: dict[str, Any], cand: dict[str, Any]) -> tuple[list[str], bool]:
    """What differs between two eval recipes; a changed model fingerprint is vendor drift."""
    changes = []
    for k in _RECIPE_KEYS:
        if base.get(k) != cand.get(k):
            changes.append(k)
    drift = base.get("model_fingerprint") != cand.get("model_fingerprint")
    return changes, drift


def compare_evals(ledger: Ledger, baseline_id: str, candidate_id: str, qrels: dict[str, dict[str, int]], settings: RegressionSettings) -> GateReport:
    """Judge the candidate eval against the baseline eval.

    Raises:
        LookupError: an eval id is unknown.
        ValueError: the two evals used different query sets or retrievers (not comparable).
    """
    b, c = ledger.get_eval(baseline_id), ledger.get_eval(candidate_id)
    if b is None or c is None:
        raise LookupError(f"unknown eval run {baseline_id if b is None else candidate_id!r}")
    if b["query_set_hash"] != c["query_set_hash"]:
        raise ValueError("baseline and candidate were evaluated on different query sets; re-run both on the same one")
    bq, brank = ledger.eval_queries(b["eval_id"])
    cq, crank = ledger.eval_queries(c["eval_id"])
    thresholds = RegressionThresholds(warn_drop=settings.warn_drop, fail_drop=settings.fail_drop, alpha=settings.alpha, metrics=settings.metrics)
    verdict: Verdict = regression_verdict(_by_metric(bq), _by_metric(cq), thresholds, n_resamples=settings.resamples,
                                          n_permutations=settings.resamples, seed=settings.seed)
    lost = lost_relevant({q: dict(r) for q, r in brank.items()}, {q: dict(r) for q, r in crank.items()}, qrels, settings.lost_k)
    lost = {q: d for q, d in sorted(lost.items()) if d}
    changes, drift = recipe_changes(b["recipe"], c["recipe"])
    status = verdict.status.value
    parts = [f"{m}: {v.status.value} ({v.reason})" for m, v in verdict.metrics.items()]
    if drift:
        parts.append("vendor drift: the embedding model's weights differ from the baseline's "
                     f"({str(b['recipe'].get('model_fingerprint'))[:12]} -> {str(c['recipe'].get('model_fingerprint'))[:12]})")
    elif changes:
        parts.append("recipe changed: " + ", ".join(changes))
    parts.append(f"{len(lost)} queries lost relevant documents from their top {settings.lost_k}")
    return GateReport(
        status=status, baseline_eval=b["eval_id"], candidate_eval=c["eval_id"], baseline_snapshot=b["snapshot_id"],
        candidate_snapshot=c["snapshot_id"], retriever=c["retriever"], verdict=verdict.to_dict(), lost=lost,
        recipe_changes=changes, vendor_drift=drift, summary="; ".join(parts),
    )


def worst(statuses: list[str]) -> str:
    return Status.worst([Status(s) for s in statuses]).value if statuses else "pass"
