"""Evaluation runs: query sets, per-run and per-query metrics, rankings, and pinned baselines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from indexops.ledger.rows import _aware, _chunks_of
from indexops.ledger.schema import eval_queries, eval_runs, query_sets, utcnow


@dataclass(frozen=True)
class QuerySet:
    """A registered query set: `source` names its queries and qrels files ("queries + qrels")."""

    hash: str
    name: str
    source: str | None
    queries: int
    judgements: int


class EvalRepository:
    """The `query_sets`, `eval_runs` and `eval_queries` tables."""

    engine: Engine

    def register_query_set(self, h: str, name: str, source: str, n_queries: int, n_judgements: int) -> None:
        with self.engine.begin() as c:
            if c.execute(select(query_sets.c.hash).where(query_sets.c.hash == h)).first() is None:
                c.execute(insert(query_sets).values(hash=h, name=name, source=source, queries=n_queries, judgements=n_judgements, registered_at=utcnow()))

    def query_set(self, h: str) -> QuerySet | None:
        with self.engine.connect() as c:
            r = c.execute(select(query_sets).where(query_sets.c.hash == h)).first()
        return None if r is None else QuerySet(r.hash, r.name, r.source, r.queries, r.judgements)

    def save_eval(self, eval_id: str, snapshot_id: str, collection: str, qs_hash: str, retriever: str, recipe: dict[str, Any],
                  metrics: dict[str, Any], per_query: dict[str, dict[str, float]], rankings: dict[str, list[tuple[str, float]]]) -> None:
        with self.engine.begin() as c:
            c.execute(insert(eval_runs).values(
                eval_id=eval_id, created_at=utcnow(), snapshot_id=snapshot_id, collection=collection, query_set_hash=qs_hash,
                retriever=retriever, recipe_json=json.dumps(recipe, sort_keys=True, default=str), metrics_json=json.dumps(metrics, sort_keys=True),
            ))
            rows = [{"eval_id": eval_id, "qid": q, "metrics_json": json.dumps(per_query.get(q, {}), sort_keys=True),
                     "ranking_json": json.dumps(rankings.get(q, []))} for q in sorted(set(per_query) | set(rankings))]
            for part in _chunks_of(rows, 1000):
                c.execute(insert(eval_queries), list(part))

    def list_evals(self, retriever: str | None = None, query_set_hash: str | None = None) -> list[dict[str, Any]]:
        q = select(eval_runs).order_by(eval_runs.c.created_at)
        if retriever:
            q = q.where(eval_runs.c.retriever == retriever)
        if query_set_hash:
            q = q.where(eval_runs.c.query_set_hash == query_set_hash)
        with self.engine.connect() as c:
            return [_eval(r) for r in c.execute(q)]

    def get_eval(self, eval_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(eval_runs).where(eval_runs.c.eval_id.startswith(eval_id))).first()
        return None if r is None else _eval(r)

    def eval_queries(self, eval_id: str) -> tuple[dict[str, dict[str, float]], dict[str, list[tuple[str, float]]]]:
        with self.engine.connect() as c:
            rows = c.execute(select(eval_queries).where(eval_queries.c.eval_id == eval_id)).all()
        return ({r.qid: json.loads(r.metrics_json) for r in rows}, {r.qid: [tuple(x) for x in json.loads(r.ranking_json)] for r in rows})

    def pin_eval(self, eval_id: str, name: str = "baseline") -> None:
        with self.engine.begin() as c:
            r = c.execute(select(eval_runs.c.retriever, eval_runs.c.query_set_hash).where(eval_runs.c.eval_id == eval_id)).first()
            if r is None:
                raise LookupError(f"unknown eval run {eval_id!r}")
            c.execute(update(eval_runs).where(eval_runs.c.pinned == name, eval_runs.c.retriever == r.retriever,
                                              eval_runs.c.query_set_hash == r.query_set_hash).values(pinned=None))
            c.execute(update(eval_runs).where(eval_runs.c.eval_id == eval_id).values(pinned=name))

    def pinned_eval(self, retriever: str, query_set_hash: str, name: str = "baseline") -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(eval_runs).where(eval_runs.c.pinned == name, eval_runs.c.retriever == retriever,
                                                  eval_runs.c.query_set_hash == query_set_hash)).first()
        return None if r is None else _eval(r)


def _eval(r: Any) -> dict[str, Any]:
    return {"eval_id": r.eval_id, "created_at": _aware(r.created_at).isoformat(), "snapshot_id": r.snapshot_id, "collection": r.collection,
            "query_set_hash": r.query_set_hash, "retriever": r.retriever, "recipe": json.loads(r.recipe_json),
            "metrics": json.loads(r.metrics_json), "pinned": r.pinned}
