"""Ingest stages as tasks: each unpacks its inputs, calls one core function, logs counts."""

from __future__ import annotations

import os
import sqlite3
import sys
from functools import lru_cache
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from indexops.embed.factory import make_embedder
from indexops.index.context import IndexContext, embedding_spec
from indexops.index.promotion import ensure_live
from indexops.index.snapshot import publish_snapshot
from indexops.ingest import stages
from indexops.ingest.driver import validate_unit
from indexops.ingest.units import SourcePlan, WorkUnit, plan_source
from indexops.ingest.plan import BatchPlan, plan_batch
from indexops.ingest.stages import ChunkPlan
from indexops.ingest.summary import ingest_markdown
from indexops.ingest.validate import ValidationResult
from indexops.ledger import AppliedFile, KeyChanges
from indexops.models import FeedRecord, Quarantined
from indexops.settings import RunnerSettings
from tasks.source_credentials import source_credentials


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only I/O that may pass: locked SQLite, dropped connections, store timeouts."""
    try:
        state.result()
    except (sqlite3.OperationalError, ConnectionError, TimeoutError, OSError):
        return True
    except Exception as e:  # noqa: BLE001
        name = type(e).__name__
        return name in {"OperationalError", "ResponseHandlingException", "UnexpectedResponse", "ConnectTimeout", "ReadTimeout"}
    return False


PROGRESS_MIN_CHUNKS = 256

IO_RETRY = dict(retries=3, retry_delay_seconds=[1, 5, 15], retry_condition_fn=_transient)


@task(name="scan_source", cache_policy=NO_CACHE, timeout_seconds=600)
def scan_source(ctx: IndexContext, path: str, kind: str, feed: str | None) -> SourcePlan:
    """List what the run will apply: pending batch files or snapshot slices. A remote source's
    credentials block is read here, so its values are no task parameter."""
    log = get_run_logger()
    creds = source_credentials(ctx.settings, path)
    if creds is not None:
        block = ctx.settings.sql.password_block if creds.password is not None else ctx.settings.source.credentials_block
        log.info("source credentials from Prefect block %s", block)
    sp = plan_source(ctx, path, kind, feed, creds)  # type: ignore[arg-type]
    if sp.keyed is not None:
        c = sp.keyed
        log.info("source %s (%s): %d key(s) listed, %d changed, %d unchanged, %d to delete", sp.feed, kind, c.listed,
                 c.listed - c.unchanged, c.unchanged, c.deleted)
    else:
        log.info("feed %s (%s): %d pending file(s)", sp.feed, kind, sp.pending_files)
    for name in sp.changed_after_apply:
        log.warning("batch file %s of feed %s changed after it was applied; it is NOT re-applied", name, sp.feed)
    return sp


@task(name="validate_batch", cache_policy=NO_CACHE, timeout_seconds=900)
def validate_batch(ctx: IndexContext, unit: WorkUnit, feed: str, run_id: str) -> ValidationResult:
    """Great Expectations suite + record model; too many bad rows fails the task."""
    res = validate_unit(ctx, unit, feed, run_id)
    get_run_logger().info("%s: %d good, %d quarantined", unit.label, len(res.good), len(res.bad))
    return res


@task(name="plan_changes", cache_policy=NO_CACHE, timeout_seconds=900, **IO_RETRY)
def plan_changes(ctx: IndexContext, records: list[FeedRecord], feed: str, snapshot_deletes: list[str]) -> BatchPlan:
    """Diff the batch with the ledger: unchanged, stale, deleted, duplicates, to index."""
    plan = plan_batch(ctx, records, feed, snapshot_deletes)
    c = plan.counts
    get_run_logger().info(
        "to index %d, deleted %d, unchanged %d, stale %d, exact dup %d, near dup %d",
        len(plan.reindex), c.deleted, c.unchanged, c.stale, c.exact_duplicates, c.near_duplicates,
    )
    return plan


@task(name="chunk_documents", cache_policy=NO_CACHE, timeout_seconds=900, **IO_RETRY)
def chunk_documents(ctx: IndexContext, plan: BatchPlan, run_id: str) -> ChunkPlan:
    """Chunk changed documents and keep only chunks whose embed text is new."""
    cp = stages.chunk_batch(ctx, plan, run_id)
    get_run_logger().info("chunks to embed %d, payload-only %d, to delete %d", len(cp.to_embed), len(cp.payload_only), len(cp.delete_points))
    return cp


@task(name="embed_chunks", cache_policy=NO_CACHE, timeout_seconds=4 * 3600)
def embed_chunks(ctx: IndexContext, cp: ChunkPlan, label: str) -> stages.Vectors:
    """Encode new chunks with a progress artifact (and a bar on a terminal)."""
    if not cp.to_embed:
        return {}
    n = len(cp.to_embed)
    # a few hundred chunks take seconds: a progress artifact would only add API calls to the run
    art = create_progress_artifact(progress=0.0, description=f"embedding {n} chunks of {label} with {ctx.embedder.model_id}") \
        if n >= PROGRESS_MIN_CHUNKS else None
    bar = None
    if sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        tid = bar.add_task(f"embedding {label}", total=n)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        pct = 100.0 * done / max(total, 1)
        if art is not None and (pct - last[0] >= 5 or done == total):
            update_progress_artifact(artifact_id=art, progress=pct)
            last[0] = pct
        if bar is not None:
            bar.update(tid, completed=done)

    try:
        vecs = stages.embed_chunks(ctx, cp.to_embed, progress)
    finally:
        if bar is not None:
            bar.stop()
    get_run_logger().info("embedded %d chunks", n)
    return vecs


@lru_cache(maxsize=2)
def _worker_embedder(model: str, dim: int, batch_size: int | None, device: str, normalize: bool, backend: str = "torch") -> Any:
    """One model load per worker process, however many encode tasks it runs."""
    return make_embedder(model, dim=dim, batch_size=batch_size, device=device, normalize=normalize, backend=backend)


@task(name="encode_texts", cache_policy=NO_CACHE, timeout_seconds=3600, retries=1, retry_delay_seconds=5)
def encode_texts(texts: list[str], embedding: dict[str, Any]) -> list[list[float]]:
    """Encode one slice of texts on whichever worker the task runner picked. Logs how many encoders
    this worker process has built (one per model, however many tasks it runs)."""
    vectors = _worker_embedder(**embedding).embed(texts).tolist()
    built = _worker_embedder.cache_info()
    get_run_logger().info("worker pid %d: %d text(s) encoded; encoders built in this worker: %d (tasks here: %d)",
                          os.getpid(), len(texts), built.misses, built.hits + built.misses)
    return vectors


def task_runner_for(runner: RunnerSettings) -> Any:
    """The Prefect task runner the config names, or None to encode in the flow process."""
    if runner.kind == "sequential":
        return None
    from prefect_dask import DaskTaskRunner

    if runner.address:
        return DaskTaskRunner(address=runner.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": runner.n_workers, "threads_per_worker": runner.threads_per_worker,
                                          "processes": True, "dashboard_address": None})


def embed_chunks_fanout(runner: Any, ctx: IndexContext, cp: ChunkPlan, label: str) -> stages.Vectors:
    """Encode new chunks (of unit `label`) as `encode_texts` tasks spread over the task runner's workers."""
    if not cp.to_embed:
        return {}
    texts = stages.distinct_embed_texts(cp.to_embed)
    cfg = embedding_spec(ctx.settings)
    step = ctx.settings.runner.embed_batch
    futures = [runner.submit(encode_texts, parameters={"texts": texts[i : i + step], "embedding": cfg}) for i in range(0, len(texts), step)]
    vecs = [row for f in futures for row in f.result()]
    get_run_logger().info("embedded %d chunks in %d task(s) on %s", len(cp.to_embed), len(futures), type(runner).__name__)
    return stages.vectors_by_chunk(cp.to_embed, texts, vecs)


@task(name="write_index", cache_policy=NO_CACHE, timeout_seconds=1800, **IO_RETRY)
def write_index(ctx: IndexContext, cp: ChunkPlan, vectors: stages.Vectors) -> dict[str, int]:
    """Upsert and delete points in Qdrant (idempotent, before the ledger commit)."""
    out = stages.write_store(ctx, cp, vectors)
    get_run_logger().info("store: %s", out)
    return out


@task(name="commit_ledger", cache_policy=NO_CACHE, timeout_seconds=900, **IO_RETRY)
def commit_ledger(ctx: IndexContext, cp: ChunkPlan, quarantined: list[Quarantined], applied_file: AppliedFile | None,
                  keys: KeyChanges | None = None) -> None:
    """The batch's commit point: documents, chunks, cursor or key fingerprints, and quarantine in one transaction."""
    stages.commit_batch(ctx, cp, quarantined, applied_file, keys)


@task(name="publish_snapshot", cache_policy=NO_CACHE, timeout_seconds=600, **IO_RETRY)
def publish_snapshot_task(ctx: IndexContext, run_id: str) -> dict[str, Any]:
    """Compute the content-addressed snapshot id and store its manifest."""
    m = publish_snapshot(ctx, run_id)
    log = get_run_logger()
    log.info("snapshot %s (%d documents, %d chunks)", m["snapshot_id"][:12], m["documents"], m["chunks"])
    live = ensure_live(ctx.ledger, ctx.collection)
    m["live_collection"] = live["collection"]
    if live["collection"] != ctx.collection:
        log.warning("this ingest updated %s but live serves %s: point the ingest config at the live recipe", ctx.collection, live["collection"])
    return m


@task(name="publish_run_report", cache_policy=NO_CACHE, timeout_seconds=120)
def publish_run_report(summary: dict[str, Any]) -> None:
    """Markdown artifact with the run's counts, snapshot id and time per stage."""
    key = "ingest-" + "".join(ch if ch.isalnum() else "-" for ch in summary["feed"].lower()).strip("-")[:50]
    create_markdown_artifact(markdown=ingest_markdown(summary), key=key or "ingest", description=f"ingest of {summary['feed']}")


def emit_quarantine_spike(payload: dict[str, Any]) -> None:
    """A custom Prefect event the quarantine-spike automation listens for (the data team is told)."""
    from prefect.events import emit_event

    from indexops.operations import QUARANTINE_SPIKE_EVENT

    emit_event(event=QUARANTINE_SPIKE_EVENT, resource={"prefect.resource.id": f"indexops.feed.{payload['feed']}",
                                                       "prefect.resource.name": payload["feed"]}, payload=payload)
    get_run_logger().warning("quarantine spike in feed %s: %d of %d records quarantined (%.1f%% > %.1f%%)", payload["feed"],
                             payload["quarantined"], payload["received"], 100 * payload["rate"], 100 * payload["threshold"])
