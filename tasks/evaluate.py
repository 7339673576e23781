"""Evaluation stages as tasks: load a labeled set, evaluate a retriever, gate, publish."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from indexops.eval.evaluate import EvalOutcome, evaluate_snapshot
from indexops.eval.gate import GateReport, compare_evals
from indexops.eval.queries import QuerySet, load_query_set
from indexops.eval.summary import eval_rows, gate_markdown
from indexops.index.context import IndexContext
from indexops.index.rebuild import rebuild_collection
from indexops.index.snapshot import publish_snapshot


@task(name="load_query_set", cache_policy=NO_CACHE, timeout_seconds=300, retries=2, retry_delay_seconds=5)
def load_query_set_task(queries: str, qrels: str) -> QuerySet:
    """Read queries and qrels; the set is named by its content hash."""
    qs = load_query_set(queries, qrels)
    get_run_logger().info("query set %s: %d judged queries (hash %s)", qs.name, len(qs), qs.hash[:12])
    return qs


@task(name="evaluate_retriever", cache_policy=NO_CACHE, timeout_seconds=3 * 3600)
def evaluate_retriever(ctx: IndexContext, qs: QuerySet, retriever: str, metrics: list[str]) -> EvalOutcome:
    """Retrieve for every query, score, store the run with its recipe."""
    o = evaluate_snapshot(ctx, qs, retriever, metrics)
    get_run_logger().info("%s on %s: %s", retriever, qs.name, ", ".join(f"{k} {v:.4f}" for k, v in o.metrics.items()))
    return o


@task(name="publish_eval_table", cache_policy=NO_CACHE, timeout_seconds=120)
def publish_eval_table(outcomes: list[EvalOutcome]) -> None:
    """Table artifact: one row per retriever, with snapshot and query-set ids."""
    create_table_artifact(table=eval_rows(outcomes), key="evaluation", description="retrieval metrics per retriever (definitions in the ledger run)")


@task(name="gate_against_baseline", cache_policy=NO_CACHE, timeout_seconds=600)
def gate_against_baseline(ctx: IndexContext, baseline_id: str, candidate_id: str, qs: QuerySet) -> GateReport:
    """Paired comparison of two stored evals; the report names lost queries and recipe changes."""
    g = compare_evals(ctx.ledger, baseline_id, candidate_id, qs.qrels, ctx.settings.regression)
    get_run_logger().info("gate %s: %s", g.status, g.summary)
    return g


@task(name="publish_gate_report", cache_policy=NO_CACHE, timeout_seconds=120)
def publish_gate_report(reports: list[GateReport], title: str) -> None:
    create_markdown_artifact(markdown=gate_markdown(reports, title), key="nightly-regression", description=title)


@task(name="build_candidate_collection", cache_policy=NO_CACHE, timeout_seconds=6 * 3600)
def build_candidate_collection(ctx: IndexContext, run_id: str) -> dict[str, Any]:
    """Build a collection for a new recipe from the ledger's documents (blue/green)."""
    n = rebuild_collection(ctx, run_id)
    m = publish_snapshot(ctx, run_id)
    get_run_logger().info("candidate %s: snapshot %s, %d chunks embedded", ctx.collection, m["snapshot_id"][:12], n)
    return m
