"""Evaluate a snapshot on a labeled query set and keep the run: metrics with their definitions,
per-query values and rankings, and the full recipe (snapshot id, query-set hash, retriever
config, model fingerprint, code version) so any figure can be reproduced."""

from __future__ import annotations

import subprocess
import time
from functools import lru_cache
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import indexops
from indexops.eval import metrics as M
from indexops.eval.queries import QuerySet
from indexops.eval.retrieval import make_retriever
from indexops.index.context import IndexContext, recipe_hash
from indexops.index.snapshot import served_snapshot_id


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    v = indexops.__version__
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+{sha}" if sha else v


def max_k(metric_names: list[str]) -> int:
    ks = [M.parse_metric(m).k or 0 for m in metric_names]
    return max([100, *ks])


@dataclass
class EvalOutcome:
    eval_id: str
    retriever: str
    snapshot_id: str
    collection: str
    query_set: str
    query_set_hash: str
    metrics: dict[str, float]
    definitions: dict[str, str]
    recipe: dict[str, Any]
    seconds: float
    queries: int
    per_query: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    run: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    def to_dict(self, with_queries: bool = False) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("per_query", "run")}
        if with_queries:
            d["per_query"] = self.per_query
        return d


def evaluate_snapshot(ctx: IndexContext, qs: QuerySet, retriever: str, metric_names: list[str], store: bool = True) -> EvalOutcome:
    """Run one retriever over the query set on the context's collection and record the result."""
    k = max_k(metric_names)
    r = make_retriever(ctx, retriever)
    t0 = time.perf_counter()
    run = r.retrieve(qs.queries, k)
    seconds = time.perf_counter() - t0
    res = M.evaluate(run, qs.qrels, metric_names)
    means = dict(res.means)
    per_query: dict[str, dict[str, float]] = {}
    for m, values in res.per_query.items():
        for q, v in values.items():
            per_query.setdefault(q, {})[m] = v
    sid = served_snapshot_id(ctx)
    recipe = {
        "snapshot_id": sid, "collection": ctx.collection, "index_recipe_hash": recipe_hash(ctx.recipe),
        "model_fingerprint": ctx.recipe["embedding"]["fingerprint"], "model": ctx.recipe["embedding"]["model"],
        "retriever": r.config(), "query_set": {"name": qs.name, "hash": qs.hash, "queries": len(qs)},
        "code_version": code_version(), "chunker": ctx.recipe["chunker"], "bm25": ctx.recipe["bm25"],
    }
    out = EvalOutcome(
        eval_id=uuid.uuid4().hex, retriever=retriever, snapshot_id=sid, collection=ctx.collection, query_set=qs.name,
        query_set_hash=qs.hash, metrics=means, definitions=dict(res.definitions), recipe=recipe, seconds=seconds, queries=len(qs),
        per_query=per_query, run=run,
    )
    if store:
        ctx.ledger.register_query_set(qs.hash, qs.name, qs.source, len(qs), sum(len(v) for v in qs.qrels.values()))
        rankings = {q: [(d, round(s, 6)) for d, s in docs.items()] for q, docs in run.items()}
        ctx.ledger.save_eval(out.eval_id, sid, ctx.collection, qs.hash, retriever, recipe,
                             {"means": means, "definitions": out.definitions, "seconds": seconds}, per_query, rankings)
    return out


class BelowFloor(Exception):
    """Retrieval quality under the configured floor: the evaluate flow fails (and pages)."""


class RegressionFailed(Exception):
    """The nightly regression gate said fail."""


def floor_check(outcome: EvalOutcome, metric: str, floor: float) -> str | None:
    """A message when the floor metric is under the floor, else None."""
    v = outcome.metrics.get(M.parse_metric(metric).name)
    if v is None:
        return f"floor metric {metric!r} was not computed"
    if v < floor:
        return (f"{metric} = {v:.4f} on {outcome.query_set} with {outcome.retriever} is below the floor {floor:.2f} "
                f"(snapshot {outcome.snapshot_id[:12]}): fix retrieval before touching the generator")
    return None
