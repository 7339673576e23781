"""Ingest a feed into the index: validate, dedupe, chunk, embed what changed, write, snapshot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from indexops.feeds.sources import detect_kind
from indexops.models import BatchCounts
from indexops.pipeline import new_run_id, open_index
from indexops.settings import load_settings
from tasks.ingest import (
    add_counts,
    chunk_documents,
    commit_ledger,
    embed_chunks,
    plan_changes,
    publish_run_report,
    publish_snapshot_task,
    scan_source,
    validate_batch,
    write_index,
)


@flow(name="ingest", log_prints=True, description="Apply a feed's pending changes to the index and name the result with a snapshot id.")
def ingest(
    feed_path: str,
    workspace: str,
    config_path: str | None = None,
    source_kind: Literal["auto", "delta", "snapshot", "beir"] = "auto",
    feed_name: str | None = None,
    embedding_model: str | None = None,
    lock_wait_s: float = 0.0,
) -> dict[str, Any]:
    """Run one ingest of `feed_path` into the index in `workspace`; returns the run summary."""
    log = get_run_logger()
    overrides = {"embedding": {"model": embedding_model}} if embedding_model else None
    settings = load_settings(config_path, overrides)
    kind = detect_kind(feed_path) if source_kind == "auto" else source_kind
    ctx = open_index(workspace, settings)
    run_id = str(flow_run.get_id() or new_run_id())
    owner = ctx.ledger.acquire_lock(ctx.collection, wait_s=lock_wait_s)
    ctx.ledger.start_run(run_id, feed_name or Path(feed_path).resolve().name, str(feed_path))
    timings: dict[str, float] = {}
    totals = BatchCounts()
    files: list[str] = []

    def timed(stage: str, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t

    try:
        sp = timed("scan", scan_source, ctx, feed_path, kind, feed_name)
        for unit in sp.units:
            res = timed("validate", validate_batch, ctx, unit, sp.feed, run_id)
            plan = timed("plan", plan_changes, ctx, res.good, sp.feed, unit.snapshot_deletes)
            cp = timed("chunk", chunk_documents, ctx, plan, run_id)
            vectors = timed("embed", embed_chunks, ctx, cp, unit.label)
            timed("store", write_index, ctx, cp, vectors)
            timed("ledger", commit_ledger, ctx, cp, res.bad, unit.applied_file)
            totals = add_counts(totals, plan, cp, res)
            if unit.applied_file:
                files.append(unit.label)
        manifest = timed("snapshot", publish_snapshot_task, ctx, run_id)
        summary = {
            "run_id": run_id, "feed": sp.feed, "source_kind": kind, "counts": totals.model_dump(),
            "snapshot": manifest, "timings_s": timings, "files": files, "changed_after_apply": sp.changed_after_apply,
        }
        publish_run_report(summary)
        ctx.ledger.finish_run(run_id, "completed", totals.model_dump(), snapshot_id=manifest["snapshot_id"])
        log.info("ingest of %s done: snapshot %s", sp.feed, manifest["snapshot_id"][:12])
        return summary
    except BaseException as e:
        ctx.ledger.finish_run(run_id, "failed", totals.model_dump(), error=str(e)[:2000])
        raise
    finally:
        ctx.ledger.release_lock(ctx.collection, owner)
        ctx.close()


if __name__ == "__main__":
    import sys

    ingest(feed_path=sys.argv[1], workspace=sys.argv[2])
