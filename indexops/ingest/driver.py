"""Turn a source into units of work (one batch file, or a slice of a full snapshot) and the one
driver that applies them (`run_source`). The Prefect flow is that driver with each stage run as
a task; `ingest_path` is that driver with each stage called directly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexops.embed.protocol import ProgressFn
from indexops.index.context import IndexContext, needs_optimize, open_index, optimize_index
from indexops.index.snapshot import publish_snapshot
from indexops.ingest.readers import FeedFileError
from indexops.ingest.sources import SourceKind, batch_files, detect_kind, feed_name, iter_snapshot_records, read_pending, scan_delta_feed
from indexops.ingest.stages import EmbedFn, StageCall, apply_batch, call_directly, chunk_ahead, new_run_id, timed_call
from indexops.ingest.validate import BatchRejected, ValidationResult, validate_records
from indexops.ledger import AppliedFile, Ledger
from indexops.models import BatchCounts, Quarantined, SourceRecord
from indexops.settings import load_settings


@dataclass
class WorkUnit:
    """One atomic unit: its records land together or not at all."""

    label: str
    records: list[SourceRecord] = field(default_factory=list)
    read_errors: list[Quarantined] = field(default_factory=list)
    applied_file: AppliedFile | None = None
    snapshot_deletes: list[str] = field(default_factory=list)
    snapshot_seen: set[str] | None = None  # the last unit of a full snapshot: every id the source holds
    screened: ValidationResult | None = None


@dataclass
class SourcePlan:
    feed: str
    kind: SourceKind
    units: Iterator[WorkUnit]
    changed_after_apply: list[str] = field(default_factory=list)
    late_files: list[str] = field(default_factory=list)
    pending_files: int = 0


def plan_source(ctx: IndexContext, path: str | Path, kind: SourceKind, feed: str | None = None) -> SourcePlan:
    """Describe what a run will apply, lazily (files are read when their unit is reached)."""
    name = feed or feed_name(path)
    if kind == "delta":
        st = scan_delta_feed(path, ctx.ledger, name)

        def delta_units() -> Iterator[WorkUnit]:
            for pf in st.pending:
                try:
                    recs, bad, applied = read_pending(pf, name)
                except FeedFileError as e:
                    yield WorkUnit(label=pf.name, read_errors=[Quarantined(feed=name, file=pf.name, line=0, reason=str(e))])
                    continue
                yield WorkUnit(label=pf.name, records=recs, read_errors=bad, applied_file=applied)

        return SourcePlan(name, kind, delta_units(), st.changed_after_apply, [p.name for p in st.pending if p.late], len(st.pending))

    batch = ctx.settings.ingest.batch_docs

    def snapshot_units() -> Iterator[WorkUnit]:
        seen: set[str] = set()
        unit = WorkUnit(label="part-000001")
        n = 1
        for rec, bad in iter_snapshot_records(path, name, kind):
            if bad is not None:
                unit.read_errors.append(bad)
                if bad.record_id:
                    seen.add(bad.record_id)
                continue
            assert rec is not None
            rid = rec.raw.get("id")
            if isinstance(rid, (str, int)) and not isinstance(rid, bool):
                seen.add(str(rid).strip())
            unit.records.append(rec)
            if len(unit.records) >= batch:
                yield unit
                n += 1
                unit = WorkUnit(label=f"part-{n:06d}")
        unit.snapshot_seen = seen  # what it deletes is read from the ledger when the unit is applied
        yield unit

    return SourcePlan(name, kind, snapshot_units())


@dataclass(frozen=True)
class PendingWork:
    """What a delta feed has waiting: batch files and their bytes."""

    files: int
    bytes: int


def pending_work(workspace: str | Path, ledger_url: str | None, path: str | Path, kind: SourceKind,
                 feed: str | None = None) -> PendingWork | None:
    """A delta feed's waiting batch files, read from the ledger alone (no index opened, no model
    loaded): lets a caller skip queueing and heartbeats for a run with little or nothing to do.
    None for snapshot and BEIR sources, which are compared record by record, and for a missing feed."""
    root = Path(path)
    if kind != "delta" or not root.is_dir():
        return None
    led = Ledger.for_workspace(workspace, ledger_url)
    try:
        applied = led.applied_files(feed or feed_name(path))
    finally:
        led.close()
    # pending as scan_delta_feed defines it (a batch file whose name was never applied), without
    # hashing every file: the run's own scan hashes them to spot files changed after apply
    files, size = 0, 0
    for p in batch_files(root):
        if p.name not in applied:
            try:
                size += p.stat().st_size
                files += 1
            except OSError:
                pass  # removed while we listed it: not pending
    return PendingWork(files, size)


def run_settings(config_path: str | Path | None, feed_path: str | Path, source_kind: str,
                 embedding_model: str | None = None) -> tuple[Any, SourceKind]:
    """A run's settings (the config file, the model override) and its source kind (`auto` detected)."""
    settings = load_settings(config_path, {"embedding": {"model": embedding_model}} if embedding_model else None)
    return settings, detect_kind(feed_path) if source_kind == "auto" else source_kind  # type: ignore[return-value]


# pending delta files below this size are seconds of work (~700 SciFact-sized documents)
QUICK_RUN_BYTES = 1 << 20


def encode_ahead_of_run(workspace: str | Path, settings: Any, path: str | Path, kind: SourceKind, feed: str | None = None) -> int:
    """For a caller about to spend seconds before its run starts (the CLI imports Prefect and
    creates the flow run: ~1.5 s): read a small delta's first pending file and start encoding its
    changed texts on a thread of this process, where the run's `embed` takes them
    (`PooledEmbedder.prefetch` of a small input). Speculative like `UnitsAhead`: it applies nothing
    and decides nothing — the run reads, validates and plans the file again under the ledger lock,
    and texts it does not ask for are dropped. (Like any command that opens the index, it may record
    a new collection's empty state and refresh the stat records of applied files.) Returns the texts
    queued (0: not a small pending delta, or nothing in it to encode)."""
    pending = pending_work(workspace, settings.ledger.url, path, kind, feed)  # None for snapshot and BEIR sources
    if pending is None or pending.files == 0 or pending.bytes >= QUICK_RUN_BYTES:
        return 0
    ctx = open_index(workspace, settings)
    try:
        sp = plan_source(ctx, path, kind, feed)
        unit = next(sp.units, None)
        return chunk_ahead(ctx, screen_unit(ctx, unit, sp.feed).good) if unit is not None else 0
    finally:
        ctx.close()


def screen_unit(ctx: IndexContext, unit: WorkUnit, feed: str) -> ValidationResult:
    """Validate a unit's records (once; kept on the unit). Writes nothing."""
    if unit.screened is None:
        v = ctx.settings.validation
        res = validate_records(unit.records, feed, v.suite, v.max_text_chars, v.engine)
        res.bad = unit.read_errors + res.bad
        res.total = len(unit.records) + len(unit.read_errors)
        unit.screened = res
    return unit.screened


class UnitsAhead:
    """A source's units with one read ahead: `prepare_next()`, called while a batch encodes, reads
    the next unit, validates it and chunks what changed (`chunk_ahead`), so the encoder workers go
    on to its texts without waiting for this batch's store write and ledger commit. Called once
    before the first unit, it starts the workers on that unit's texts while the unit is planned.
    Only with an encoder pool in this process (`ahead`); a failure while reading ahead surfaces
    when the unit's turn comes, as it would have without the look-ahead."""

    def __init__(self, ctx: IndexContext, units: Iterator[WorkUnit], feed: str, ahead: bool = True) -> None:
        self.ctx = ctx
        self.feed = feed
        self._units = units
        self._next: WorkUnit | None = None
        self._read_error: BaseException | None = None
        self._has_next = False
        self.enabled = ahead and ctx.pool is not None

    def __iter__(self) -> Iterator[WorkUnit]:
        while True:
            if self._read_error is not None:
                err, self._read_error = self._read_error, None
                raise err
            unit = self._next if self._has_next else next(self._units, None)
            self._next, self._has_next = None, False
            if unit is None:
                return
            yield unit

    def prepare_next(self) -> None:
        if not self.enabled or self._has_next:
            return
        try:
            self._next = next(self._units, None)
        except Exception as e:  # noqa: BLE001 - raised at the unit's turn
            self._read_error = e
            return
        self._has_next = True
        if self._next is None:
            return
        try:
            chunk_ahead(self.ctx, screen_unit(self.ctx, self._next, self.feed).good)
        except Exception:  # noqa: BLE001 - speculation only: the unit's own turn redoes it and fails where it should
            self._next.screened = None


def validate_unit(ctx: IndexContext, unit: WorkUnit, feed: str, run_id: str | None = None) -> ValidationResult:
    """Validate a unit; raise `BatchRejected` when its bad share passes the threshold.

    A rejected unit's bad rows are still written to the quarantine table (that is where the
    operator looks), but none of its records, and not its cursor.
    """
    v = ctx.settings.validation
    res = screen_unit(ctx, unit, feed)
    if unit.snapshot_seen is not None:  # now, not when the unit was read: earlier batches may have promoted duplicates
        unit.snapshot_deletes = sorted(ctx.ledger.active_doc_ids(feed) - unit.snapshot_seen)
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
        ctx.ledger.start_run(run_id, name, str(path))
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
                    ctx, res.good, sp.feed, run_id, snapshot_deletes=unit.snapshot_deletes, quarantined=res.bad,
                    applied_file=unit.applied_file, progress=progress, while_encoding=units.prepare_next, call=timed,
                    embed=embed, label=unit.label))
                reasons += [q.reason for q in res.bad]
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
            "timings_s": timings, "files": files, "changed_after_apply": sp.changed_after_apply, "quarantine_spike": spike}


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
