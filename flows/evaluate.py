"""Evaluate the live snapshot on a labeled query set; fail when recall is under the floor."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote  # large inputs: skip Prefect's walk over them

from indexops.eval.evaluate import BelowFloor, floor_check
from indexops.index.reader import open_live
from indexops.settings import load_settings
from tasks.evaluate import evaluate_retriever, load_query_set_task, publish_eval_table

RetrieverName = Literal["bm25", "sparse", "dense", "hybrid"]


@flow(name="evaluate", description="Measure recall@k, nDCG, MRR… of the live snapshot on labeled queries; fail under the floor.")
def evaluate(
    workspace: str,
    queries: str,
    qrels: str,
    config_path: str | None = None,
    retrievers: list[RetrieverName] | None = None,
    pin_baseline: bool = False,
) -> dict[str, Any]:
    """Evaluate each retriever on the live collection and store the runs in the ledger."""
    settings = load_settings(config_path)
    ctx = open_live(workspace, settings)
    try:
        qs = load_query_set_task(queries, qrels)
        outcomes = [evaluate_retriever(quote(ctx), quote(qs), r, settings.eval.metrics) for r in (retrievers or settings.eval.retrievers)]
        publish_eval_table(outcomes)
        if pin_baseline:
            for o in outcomes:
                ctx.ledger.pin_eval(o.eval_id)
        problems = [m for o in outcomes if (m := floor_check(o, settings.eval.floor_metric, settings.eval.floor))]
        result = {"snapshot_id": outcomes[0].snapshot_id if outcomes else None, "query_set_hash": qs.hash,
                  "evals": [o.to_dict() for o in outcomes], "floor_violations": problems}
        if problems:
            raise BelowFloor("; ".join(problems))
        get_run_logger().info("evaluation done on snapshot %s", result["snapshot_id"][:12] if result["snapshot_id"] else "-")
        return result
    finally:
        ctx.close()
