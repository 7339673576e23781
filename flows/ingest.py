"""Ingest a feed into the index: validate, dedupe, chunk, embed what changed, write, snapshot."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Literal

from prefect import Task, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.utilities.annotations import quote

from flows.scalar_params import scalar_params_flow
from indexops.ingest.driver import (
    QUICK_RUN_BYTES,
    IngestFailed,
    PendingWork,
    UnitsAhead,
    failure_message,
    pending_work,
    quarantine_spike,
    run_settings,
)
from indexops.index.context import compact_store, needs_optimize, open_index
from indexops.ingest.stages import new_run_id, queue_embedding
from indexops.models import BatchCounts
from tasks.ingest import (
    add_counts,
    chunk_documents,
    commit_ledger,
    embed_chunks,
    embed_chunks_fanout,
    emit_quarantine_spike,
    plan_changes,
    publish_run_report,
    publish_snapshot_task,
    scan_source,
    task_runner_for,
    validate_batch,
    write_index,
)
from tasks.maintenance import optimize_store

# the task each timed stage runs, so a failure names the task the UI shows
_STAGE_TASK = {"scan": "scan_source", "validate": "validate_batch", "plan": "plan_changes", "chunk": "chunk_documents",
               "embed": "embed_chunks", "store": "write_index", "ledger": "commit_ledger", "optimize": "optimize_store",
               "compact": "optimize_store", "ahead": "chunk_documents",
               "snapshot": "publish_snapshot"}


@scalar_params_flow(name="ingest", log_prints=True, description="Apply a feed's pending changes to the index and name the result with a snapshot id.")
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
    settings, kind, pending = _resolve(feed_path, workspace, config_path, source_kind, feed_name, embedding_model)
    limit = settings.ingest.concurrency_limit
    # the global limit queues a second ingest visibly in the UI; the ledger lock (in _ingest) is
    # what makes two writers impossible even without a Prefect server-side limit. A delta feed with
    # nothing pending writes nothing, so it does not queue (should a file land meanwhile, the run
    # applies it under the ledger lock all the same).
    idle = pending is not None and pending.files == 0
    slot = concurrency(limit, occupy=1, timeout_seconds=lock_wait_s or None) if limit and not idle else contextlib.nullcontext()
    with slot:
        return _ingest(feed_path, workspace, settings, kind, feed_name, lock_wait_s)


def _resolve(feed_path: str, workspace: str, config_path: str | None, source_kind: str, feed_name: str | None,
             embedding_model: str | None) -> tuple[Any, str, PendingWork | None]:
    """The run's settings, source kind and what its feed has waiting (None when unknown: a ledger
    error here is left for the run to report in full)."""
    settings, kind = run_settings(config_path, feed_path, source_kind, embedding_model)
    try:
        pending = pending_work(workspace, settings.ledger.url, feed_path, kind, feed_name)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - the run meets the same error and reports it in full
        pending = None
    return settings, kind, pending


def _ingest(feed_path: str, workspace: str, settings: Any, kind: str, feed_name: str | None, lock_wait_s: float) -> dict[str, Any]:
    log = get_run_logger()
    ctx = open_index(workspace, settings)
    run_id = str(flow_run.get_id() or new_run_id())
    owner = ctx.ledger.acquire_lock(ctx.collection, wait_s=lock_wait_s)
    feed = feed_name or Path(feed_path).resolve().name
    prev = ctx.ledger.latest_snapshot(ctx.collection)
    ctx.ledger.start_run(run_id, feed, str(feed_path))
    timings: dict[str, float] = {}
    totals = BatchCounts()
    files: list[str] = []
    reasons: list[str] = []
    at: dict[str, str | None] = {"stage": "scan", "unit": None}

    def timed(stage: str, fn: Any, *args: Any) -> Any:
        at["stage"] = stage
        t = time.perf_counter()
        try:
            # quote(): Prefect would otherwise walk every argument (a batch's records, chunks and
            # 384-float vectors) looking for futures — seconds per task on a 500-document batch
            if isinstance(fn, Task):
                args = tuple(a if isinstance(a, (str, int, float, bool, type(None))) else quote(a) for a in args)
            return fn(*args)
        finally:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t

    runner = task_runner_for(settings.runner)
    try:
        with runner if runner is not None else contextlib.nullcontext():
            sp = timed("scan", scan_source, ctx, feed_path, kind, feed_name)
            feed = sp.feed
            units = UnitsAhead(ctx, sp.units, sp.feed, ahead=runner is None)  # a runner's workers encode elsewhere
            timed("ahead", units.prepare_next)  # the first unit's texts encode while it is planned
            at["stage"] = "scan"  # a unit that could not be read ahead fails when its turn comes: reading it
            for unit in units:
                at["unit"] = unit.label
                res = timed("validate", validate_batch, ctx, unit, sp.feed, run_id)
                plan = timed("plan", plan_changes, ctx, res.good, sp.feed, unit.snapshot_deletes)
                cp = timed("chunk", chunk_documents, ctx, plan, run_id)
                if runner is None:
                    queue_embedding(ctx, cp.to_embed)
                    timed("ahead", units.prepare_next)  # the next unit is read while this one encodes
                    vectors = timed("embed", embed_chunks, ctx, cp, unit.label)
                else:
                    vectors = timed("embed", embed_chunks_fanout, ctx, cp, runner)
                timed("store", write_index, ctx, cp, vectors)
                timed("ledger", commit_ledger, ctx, cp, res.bad, unit.applied_file)
                timed("compact", compact_store, ctx)
                totals = add_counts(totals, plan, cp, res)
                reasons += [q.reason for q in res.bad]
                if unit.applied_file:
                    files.append(unit.label)
                at["stage"] = "scan"
            at["unit"] = None
            if needs_optimize(ctx, totals.chunks_embedded):
                timed("optimize", optimize_store, ctx)
            manifest = timed("snapshot", publish_snapshot_task, ctx, run_id)
        summary = {
            "run_id": run_id, "feed": sp.feed, "source_kind": kind, "counts": totals.model_dump(),
            "snapshot": manifest, "timings_s": timings, "files": files, "changed_after_apply": sp.changed_after_apply,
        }
        publish_run_report(summary)
        spike = quarantine_spike(totals.received, totals.quarantined, reasons, settings.ingest.quarantine_spike_fraction)
        if spike:
            emit_quarantine_spike({**spike, "feed": sp.feed, "files": ", ".join(files) or "-",
                                   "snapshot_id": manifest["snapshot_id"], "workspace": str(workspace)})
        ctx.ledger.finish_run(run_id, "completed", totals.model_dump(), snapshot_id=manifest["snapshot_id"])
        log.info("ingest of %s done: snapshot %s", sp.feed, manifest["snapshot_id"][:12])
        return summary
    except Exception as e:
        msg = failure_message(feed, _STAGE_TASK.get(at["stage"] or "", at["stage"] or "?"), at["unit"],
                              prev["snapshot_id"] if prev else None, files, e)
        ctx.ledger.finish_run(run_id, "failed", totals.model_dump(), error=msg[:2000])
        raise IngestFailed(msg) from e
    except BaseException as e:
        ctx.ledger.finish_run(run_id, "failed", totals.model_dump(), error=f"{type(e).__name__}: {e}"[:2000])
        raise
    finally:
        ctx.ledger.release_lock(ctx.collection, owner)
        ctx.close()


def run_ingest(**params: Any) -> dict[str, Any]:
    """Run the flow in this process (the CLI's path). A run with nothing or little pending (delta
    files under QUICK_RUN_BYTES) sends no heartbeats: Prefect joins its heartbeat thread, which
    sleeps in one-second steps, at the end of every run (0-1 s on a run that otherwise takes 2-4),
    and such a run ends long before a heartbeat-based zombie detector would look at it. Any other
    run keeps Prefect's heartbeats; a killed run is marked crashed in the ledger by the next run."""
    try:
        _, _, pending = _resolve(params["feed_path"], params["workspace"], params.get("config_path"), params.get("source_kind", "auto"),
                                 params.get("feed_name"), params.get("embedding_model"))
    except Exception:  # noqa: BLE001 - a bad config fails inside the flow run, where the UI shows it
        pending = None
    quick = pending is not None and pending.bytes < QUICK_RUN_BYTES
    quiet = temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}) if quick else contextlib.nullcontext()
    with quiet:
        return ingest(**params)


if __name__ == "__main__":
    import sys

    ingest(feed_path=sys.argv[1], workspace=sys.argv[2])
