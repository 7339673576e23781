"""The one ingest driver (`run_source`): a source's units through the stages, under the index's
ingest lock, recorded as a run. The Prefect flow is this driver with each stage run as a task;
`ingest_path` is this driver with each stage called directly (the CLI's core, the benchmarks).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexops.embed.protocol import ProgressFn
from indexops.index.context import IndexContext, needs_optimize, optimize_index
from indexops.index.snapshot import publish_snapshot
from indexops.ingest.keyed import owned_by
from indexops.ingest.read_ahead import UnitsAhead, screen_unit
from indexops.ingest.sources import SourceKind, detect_kind, feed_name
from indexops.ingest.stages import EmbedFn, StageCall, apply_batch, call_directly, new_run_id, timed_call
from indexops.ingest.units import WorkUnit, open_source, plan_source
from indexops.ingest.validate import BatchRejected, ValidationResult
from indexops.models import BatchCounts
from indexops.settings import load_settings, mask_url_password


def run_settings(config_path: str | Path | None, feed_path: str | Path, source_kind: str,
                 embedding_model: str | None = None) -> tuple[Any, SourceKind]:
    """A run's settings (the config file, the model override) and its source kind (`auto` detected)."""
    settings = load_settings(config_path, {"embedding": {"model": embedding_model}} if embedding_model else None)
    return settings, detect_kind(feed_path) if source_kind == "auto" else source_kind  # type: ignore[return-value]


def validate_unit(ctx: IndexContext, unit: WorkUnit, feed: str, run_id: str | None = None) -> ValidationResult:
    """Validate a unit; raise `BatchRejected` when its bad share passes the threshold.

    A rejected unit's bad rows are still written to the quarantine table (that is where the
    operator looks), but none of its records, and not its cursor.
    """
    v = ctx.settings.validation
    res = screen_unit(ctx, unit, feed)
    if unit.snapshot_seen is not None:  # now, not when the unit was read: earlier batches may have promoted duplicates
        unit.snapshot_deletes = sorted(ctx.ledger.active_doc_ids(feed) - unit.snapshot_seen)
    if unit.keys is not None:  # a keyed source: each key stands alone, so a bad record is quarantined, never the unit
        bad = [q.record_id for q in res.bad if q.record_id]
        unit.snapshot_deletes = sorted(set(unit.snapshot_deletes) | set(owned_by(ctx, feed, bad)))  # as if the key turned unreadable
        return res
    file_error = not unit.records and any(q.line == 0 for q in unit.read_errors)
    if file_error or (res.total and res.bad_fraction > v.max_bad_fraction):
        ctx.ledger.record_quarantine(res.bad, run_id or "")
        raise BatchRejected(feed, unit.label, res, v.max_bad_fraction)
    return res


# the task each stage runs in the Prefect flow: a failure names the task the UI shows
STAGE_TASK = {"scan": "scan_source", "validate": "validate_batch", "plan": "plan_changes", "chunk": "chunk_documents",
              "embed": "embed_chunks", "store": "write_index", "ledger": "commit_ledger", "optimize": "optimize_store",
              "compact": "optimize_store", "ahead": "chunk_documents", "snapshot": "publish_snapshot"}


def run_source(
    ctx: IndexContext,
    path: str | Path,
    kind: SourceKind,
    *,
    feed: str | None = None,
    run_id: str | None = None,
    call: StageCall | None = None,
    embed: EmbedFn | None = None,
    progress: ProgressFn | None = None,
    lock_wait_s: float = 0.0,
) -> dict[str, Any]:
    """The ingest driver: apply every pending unit of a source and publish the snapshot.

    Holds the index's ingest lock (two drivers never interleave their writes) and records the run
    in the ledger. Each stage runs through `call(stage, fn, *args)` (default: `fn(*args)`; the
    Prefect flow runs the stage's task); `embed(ctx, cp, label)` replaces in-process encoding
    (and with it the look-ahead). Returns the run summary; its `quarantine_spike` is the payload
    of a quarantine-spike event, or None.

    Raises:
        IngestFailed: a stage failed (its cause: e.g. `BatchRejected`, a unit had too many bad
            records); units committed before it stay applied.
        LedgerBusy: another ingest holds the index after `lock_wait_s` seconds.
    """
    run_id = run_id or new_run_id()
    try:
        name = open_source(path, kind, feed, ctx.settings).feed  # a table's name, not its database's
    except Exception:  # noqa: BLE001 - the scan below meets the same error and reports it as the run's
        name = feed or feed_name(path)
    totals = BatchCounts()
    timings: dict[str, float] = {}
    files: list[str] = []
    reasons: list[str] = []
    at: dict[str, Any] = {"stage": "scan", "unit": None}
    timed = timed_call(call or call_directly, timings, at)
    t0 = time.perf_counter()
    owner = ctx.ledger.acquire_lock(ctx.collection, wait_s=lock_wait_s)
    try:
        prev = ctx.ledger.latest_snapshot(ctx.collection)
        ctx.ledger.start_run(run_id, name, mask_url_password(str(path)))
        try:
            sp = timed("scan", plan_source, ctx, path, kind, feed)
            name = sp.feed
            units = UnitsAhead(ctx, sp.units, sp.feed, ahead=embed is None)  # a fan-out's workers encode elsewhere
            timed("ahead", units.prepare_next)  # the first unit's texts encode while it is planned
            at["stage"] = "scan"  # a unit that could not be read ahead fails when its turn comes: reading it
            for unit in units:
                at["unit"] = unit.label
                res = timed("validate", validate_unit, ctx, unit, sp.feed, run_id)
                totals = totals.add(apply_batch(
                    ctx, res.good, sp.feed, run_id, snapshot_deletes=unit.snapshot_deletes, quarantined=res.bad + unit.unreadable,
                    applied_file=unit.applied_file, keys=unit.keys, progress=progress, while_encoding=units.prepare_next, call=timed,
                    embed=embed, label=unit.label))
                reasons += [q.reason for q in res.bad + unit.unreadable]
                if unit.applied_file:
                    files.append(unit.label)
                at["stage"] = "scan"
            at["unit"] = None
            if needs_optimize(ctx, totals.chunks_embedded):
                timed("optimize", optimize_index, ctx)
            manifest = timed("snapshot", publish_snapshot, ctx, run_id)
        except Exception as e:
            msg = failure_message(name, STAGE_TASK.get(at["stage"], at["stage"]), at["unit"], prev["snapshot_id"] if prev else None, files, e)
            ctx.ledger.finish_run(run_id, "failed", totals.model_dump(), error=msg[:2000])
            raise IngestFailed(msg) from e
        except BaseException as e:
            ctx.ledger.finish_run(run_id, "failed", totals.model_dump(), error=f"{type(e).__name__}: {e}"[:2000])
            raise
        ctx.ledger.finish_run(run_id, "completed", totals.model_dump(), snapshot_id=manifest["snapshot_id"])
    finally:
        ctx.ledger.release_lock(ctx.collection, owner)
    timings["total"] = time.perf_counter() - t0
    spike = quarantine_spike(totals.received, totals.quarantined, reasons, ctx.settings.ingest.quarantine_spike_fraction)
    return {"run_id": run_id, "feed": sp.feed, "source_kind": kind, "counts": totals.model_dump(), "snapshot": manifest,
            "timings_s": timings, "files": files, "changed_after_apply": sp.changed_after_apply, "quarantine_spike": spike,
            "keys": sp.keyed.as_dict() if sp.keyed is not None else None}


def ingest_path(ctx: IndexContext, path: str | Path, kind: SourceKind, feed: str | None = None, run_id: str | None = None,
                progress: ProgressFn | None = None, lock_wait_s: float = 0.0) -> dict[str, Any]:
    """Apply every pending unit of a source and publish the snapshot, without Prefect: `run_source`
    with each stage called directly (what the benchmarks, tests and the BEIR evaluation run)."""
    return run_source(ctx, path, kind, feed=feed, run_id=run_id, progress=progress, lock_wait_s=lock_wait_s)


class IngestFailed(RuntimeError):
    """An ingest run stopped. The message is what on-call reads first: where it stopped, what the
    index still serves, and that a re-run resumes after the last committed batch."""


def failure_message(feed: str, task: str, unit: str | None, last_snapshot: str | None, committed: Sequence[str], exc: BaseException) -> str:
    """One paragraph naming the failing task, the batch, the last published snapshot and the error."""
    err = f"{type(exc).__name__}: {exc}".strip()
    if len(err) > 800:
        err = err[:800] + " …"
    where = f" on {unit}" if unit else ""
    done = f"; {len(committed)} batch file(s) of this run were committed before it ({', '.join(committed[:5])})" if committed else ""
    snap = last_snapshot[:16] if last_snapshot else "none yet"
    return (f"ingest of feed '{feed}' failed in task {task}{where} -- index still at snapshot {snap}{done}; "
            f"a re-run resumes after the last committed batch. Error: {err}")


def quarantine_spike(received: int, quarantined: int, reasons: Sequence[str], threshold: float) -> dict[str, Any] | None:
    """The payload of a quarantine-spike event when the run's quarantined share exceeds `threshold`."""
    if received <= 0 or quarantined / received <= threshold:
        return None
    top = Counter(r[:100] for r in reasons).most_common(3)
    return {"received": received, "quarantined": quarantined, "rate": round(quarantined / received, 4), "threshold": threshold,
            "top_reasons": "; ".join(f"{r} ({n})" for r, n in top) or "-"}
