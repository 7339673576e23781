"""Ingest a feed into the index: validate, dedupe, chunk, embed what changed, write, snapshot."""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any, Literal

from prefect import Task, flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from indexops.index.context import open_index
from indexops.ingest.driver import run_settings, run_source
from indexops.ingest.stages import new_run_id
from indexops.ingest.storage import has_password
from indexops.ingest.units import PendingWork, pending_work
from indexops.settings import mask_url_password
from tasks.ingest import (
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


@flow(name="ingest", log_prints=True, description="Apply a feed's pending changes to the index and name the result with a snapshot id.")
def ingest(
    feed_path: str,
    workspace: str,
    config_path: str | None = None,
    source_kind: Literal["auto", "delta", "snapshot", "beir", "documents", "sql"] = "auto",
    feed_name: str | None = None,
    embedding_model: str | None = None,
    lock_wait_s: float = 0.0,
) -> dict[str, Any]:
    """Run one ingest of `feed_path` (a folder, an fsspec URL, or a database URL without its password)
    into the index in `workspace`; returns the run summary."""
    if has_password(feed_path):  # parameters are stored with the run and shown in the UI
        raise ValueError(f"feed_path {mask_url_password(feed_path)} holds a password: set it in the environment "
                         "(sql.password_env names the variable; PGPASSWORD or ~/.pgpass for PostgreSQL)")
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
    """The core driver (`run_source`) with each stage run as its task."""
    log = get_run_logger()
    runner = task_runner_for(settings.runner)
    tasks: dict[str, Task] = {"scan": scan_source, "validate": validate_batch, "plan": plan_changes, "chunk": chunk_documents,
                              "store": write_index, "ledger": commit_ledger, "optimize": optimize_store,
                              "snapshot": publish_snapshot_task}
    if runner is None:
        tasks["embed"] = embed_chunks  # with a runner, `embed` below fans out encode_texts tasks

    def as_task(stage: str, fn: Any, /, *args: Any) -> Any:
        task = tasks.get(stage)
        if task is None:  # the look-ahead and between-batch compaction run in the flow itself
            return fn(*args)
        # quote(): Prefect would otherwise walk every argument (a batch's records, chunks and
        # 384-float vectors) looking for futures — seconds per task on a 500-document batch
        return task(*(a if isinstance(a, (str, int, float, bool, type(None))) else quote(a) for a in args))

    ctx = open_index(workspace, settings)
    try:
        with runner if runner is not None else contextlib.nullcontext():
            summary = run_source(ctx, feed_path, kind, feed=feed_name, run_id=str(flow_run.get_id() or new_run_id()),  # type: ignore[arg-type]
                                 call=as_task, embed=partial(embed_chunks_fanout, runner) if runner is not None else None,
                                 lock_wait_s=lock_wait_s)
    finally:
        ctx.close()
    spike = summary.pop("quarantine_spike")
    publish_run_report(summary)
    if spike:
        emit_quarantine_spike({**spike, "feed": summary["feed"], "files": ", ".join(summary["files"]) or "-",
                               "snapshot_id": summary["snapshot"]["snapshot_id"], "workspace": str(workspace)})
    log.info("ingest of %s done: snapshot %s", summary["feed"], summary["snapshot"]["snapshot_id"][:12])
    return summary


def run_ingest(**params: Any) -> dict[str, Any]:
    """Run the flow in this process (the CLI's path). A feed URL holding a password is refused
    here, before Prefect records the parameters (the flow's own check is the last line)."""
    if has_password(str(params.get("feed_path", ""))):
        raise ValueError(f"feed_path {mask_url_password(str(params['feed_path']))} holds a password: set it in the environment "
                         "(sql.password_env names the variable; PGPASSWORD or ~/.pgpass for PostgreSQL)")
    return ingest(**params)


if __name__ == "__main__":
    import sys

    ingest(feed_path=sys.argv[1], workspace=sys.argv[2])
