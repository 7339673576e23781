"""Maintenance stages as tasks: reconcile the store with the ledger, report, optimize the store,
prune the near-duplicate index."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from indexops.index.context import IndexContext, optimize_index
from indexops.index.reconcile import ReconcileReport, reconcile, reconcile_markdown
from indexops.index.snapshot import publish_for_readers


@task(name="reconcile_index", cache_policy=NO_CACHE, timeout_seconds=6 * 3600)
def reconcile_index(ctx: IndexContext, repair: bool) -> ReconcileReport:
    """Compare every point id and chunk hash with the ledger; repair drift when asked."""
    report = reconcile(ctx, repair, lock=False)  # the flow holds the index lock
    log = get_run_logger()
    (log.info if report.ok else log.error)("reconcile %s", report.summary())
    return report


@task(name="publish_reconcile_report", cache_policy=NO_CACHE, timeout_seconds=120)
def publish_reconcile_report(report: ReconcileReport) -> None:
    """Markdown artifact: drift found, repaired and remaining."""
    create_markdown_artifact(markdown=reconcile_markdown(report), key="reconcile", description=f"reconcile of {report.collection}")


@task(name="optimize_store", cache_policy=NO_CACHE, timeout_seconds=3600)
def optimize_store(ctx: IndexContext) -> bool:
    """Flush and merge the store's segments (in-process for Qdrant Edge; a server does its own)."""
    changed = optimize_index(ctx)
    get_run_logger().info("store %s optimized: %s", ctx.collection, "segments merged" if changed else "already optimal")
    return changed


@task(name="publish_replica", cache_policy=NO_CACHE, timeout_seconds=3600)
def publish_replica(ctx: IndexContext) -> dict | None:
    """Publish the store's files again for readers (same snapshot id) after maintenance rewrote them."""
    rep = publish_for_readers(ctx, force=True)
    if rep is not None:
        get_run_logger().info("published %s for readers: %d files copied, %d linked", rep["replica"], rep["files_copied"], rep["files_linked"])
    return rep


@task(name="prune_lsh", cache_policy=NO_CACHE, timeout_seconds=6 * 3600)
def prune_lsh(ctx: IndexContext) -> int:
    """Delete the near-duplicate (LSH) rows documents left behind when they changed or left: ingest
    leaves them, so a delta writes no page of the large band table for them."""
    n = ctx.ledger.prune_lsh()
    get_run_logger().info("near-duplicate index: %d stale band rows deleted", n)
    return n
