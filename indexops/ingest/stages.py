"""The ingestion core: plan a batch against the ledger, chunk, embed only what changed, write
the store, commit the ledger. Each stage is a plain function so `tasks/` can wrap them one by one.

Write order (crash safety): store upserts, then store deletes, then one ledger transaction.
Point ids are deterministic, so replaying a batch whose ledger commit never happened rewrites
the same points; the ledger is the commit point and never claims what the store lacks.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexops.embed.protocol import ProgressFn
from indexops.ids import point_id, sha256_hex
from indexops.index.context import IndexContext, compact_store
from indexops.ingest.plan import BatchPlan, plan_batch
from indexops.ledger import AppliedFile, BatchCommit, ChunkRow, KeyChanges, multiset_term
from indexops.models import BatchCounts, Chunk, FeedRecord, Quarantined
from indexops.store.protocol import StorePoint


# ------------------------------------------------------------------------------------------
# Stage 2: chunk and diff against the chunks already indexed
# ------------------------------------------------------------------------------------------


@dataclass
class ChunkPlan:
    to_embed: list[Chunk] = field(default_factory=list)
    payload_only: list[Chunk] = field(default_factory=list)
    delete_points: list[str] = field(default_factory=list)
    commit: BatchCommit | None = None
    chunk_duplicates: int = 0


def embed_hash(c: Chunk) -> str:
    return sha256_hex(c.embed_text)


def chunk_batch(ctx: IndexContext, plan: BatchPlan, run_id: str) -> ChunkPlan:
    """Chunk the documents to (re)index and diff them with their indexed chunks by chunk id."""
    out = ChunkPlan()
    commit = BatchCommit(collection=ctx.collection, feed=plan.feed, run_id=run_id)
    commit.docs = list(plan.docs.values()) if plan.write_docs else []
    commit.touched_updated_at = plan.touched_updated_at
    reindex = set(plan.reindex)  # a set: a list's `in` made this loop quadratic (a 50k-document file: ~10 s)
    affected = set(plan.old_active) | reindex
    old = ctx.ledger.chunks_for_docs(ctx.collection, affected)
    acc = 0
    n = 0
    order = sorted(affected)
    results = ctx.chunker.chunk_many([(d, plan.docs[d].title, plan.docs[d].text or "", plan.docs[d].metadata)
                                      for d in order if d in reindex])  # taken in the same order below
    for did in order:
        old_rows = {r.chunk_id: r for r in old.get(did, [])}
        new_chunks: dict[str, Chunk] = {}
        if did in reindex:
            res = next(results)
            out.chunk_duplicates += res.duplicates_dropped
            new_chunks = {c.chunk_id: c for c in res.chunks}
        for cid, c in new_chunks.items():
            eh = embed_hash(c)
            prev = old_rows.get(cid)
            if prev is not None and prev.embed_hash == eh:
                if prev.chunk_hash != c.chunk_hash:
                    out.payload_only.append(c)
                    commit.chunk_hash_updates.append((cid, c.chunk_hash))
                    acc += multiset_term(cid, c.chunk_hash) - multiset_term(cid, prev.chunk_hash)
                continue
            out.to_embed.append(c)
            if prev is not None:
                commit.chunk_deletes.append(cid)
                acc -= multiset_term(cid, prev.chunk_hash)
                n -= 1
            commit.chunk_inserts.append(ChunkRow(cid, did, c.position, c.chunk_hash, eh, point_id(cid), len(c.text)))
            acc += multiset_term(cid, c.chunk_hash)
            n += 1
        for cid, r in old_rows.items():
            if cid not in new_chunks:
                out.delete_points.append(r.point_id)
                commit.chunk_deletes.append(cid)
                acc -= multiset_term(cid, r.chunk_hash)
                n -= 1
    commit.acc_delta = acc
    commit.chunk_count_delta = n
    out.commit = commit
    return out


# ------------------------------------------------------------------------------------------
# Stage 3: embed (only new or changed chunks; identical texts once)
# ------------------------------------------------------------------------------------------


def distinct_embed_texts(chunks: Sequence[Chunk]) -> list[str]:
    """Each distinct embed text once, in first-seen order (identical texts are encoded once)."""
    return list(dict.fromkeys(c.embed_text for c in chunks))


def encoder_inputs(chunks: Sequence[Chunk]) -> tuple[list[str], list[int | None], list[bytes | None]]:
    """Each distinct embed text once (`distinct_embed_texts` order) with the chunker's token count
    and token ids for it (None where it had none): an encoder pool sorts its slices by the counts,
    and its workers need not tokenize texts whose ids they get."""
    by_text = {c.embed_text: c for c in chunks}  # keys in first-seen order, as distinct_embed_texts
    return list(by_text), [c.tokens for c in by_text.values()], [c.token_ids for c in by_text.values()]


Vectors = dict[str, np.ndarray]


def vectors_by_chunk(chunks: Sequence[Chunk], texts: Sequence[str], vecs: Any) -> Vectors:
    """Map the vectors of `distinct_embed_texts(chunks)` back to every chunk id.

    Rows stay float32 views of one matrix: as Python float lists a 384-wide vector takes ~12 KiB
    instead of 1.5 KiB, which a 50k-document batch file turned into ~600 MiB of peak memory."""
    at = {t: i for i, t in enumerate(texts)}
    m = np.asarray(vecs, dtype=np.float32)
    return {c.chunk_id: m[at[c.embed_text]] for c in chunks}


def queue_embedding(ctx: IndexContext, chunks: Sequence[Chunk]) -> None:
    """Hand the encoder workers this batch's texts now, so whatever the caller does before it
    asks for the vectors (reading the next unit) runs while they encode."""
    if ctx.pool is not None and chunks:
        texts, lengths, ids = encoder_inputs(chunks)
        ctx.pool.prefetch(texts, lengths=lengths, ids=ids)


def embed_unit(ctx: IndexContext, cp: ChunkPlan, label: str, progress: ProgressFn | None = None) -> Vectors:
    """The embed stage: vectors of a unit's new chunks (`label` names the unit to progress displays)."""
    return embed_chunks(ctx, cp.to_embed, progress)


def embed_chunks(ctx: IndexContext, chunks: Sequence[Chunk], progress: ProgressFn | None = None) -> Vectors:
    """Dense vectors keyed by chunk id; each distinct embed text is encoded once."""
    if not chunks:
        return {}
    if ctx.pool is not None:
        texts, lengths, ids = encoder_inputs(chunks)
        return vectors_by_chunk(chunks, texts, ctx.pool.embed(texts, progress=progress, lengths=lengths, ids=ids))
    texts = distinct_embed_texts(chunks)
    return vectors_by_chunk(chunks, texts, ctx.embedder.embed(texts, progress=progress))


# ------------------------------------------------------------------------------------------
# Stage 4: write the store, then stage 5: commit the ledger
# ------------------------------------------------------------------------------------------


def payload_for(c: Chunk) -> dict[str, Any]:
    return {
        "doc_id": c.doc_id,
        "chunk_id": c.chunk_id,
        "position": c.position,
        "title": c.title,
        "text": c.text,
        "metadata": c.metadata,
        "chunk_hash": c.chunk_hash,
    }


def write_store(ctx: IndexContext, cp: ChunkPlan, vectors: Vectors) -> dict[str, int]:
    """Upsert new points, refresh payloads, delete removed points (idempotent by point id).

    Points are built one upsert slice at a time, so a large batch never holds all of them at once."""
    store = ctx.store
    size = ctx.settings.ingest.upsert_batch
    todo = cp.to_embed
    for i in range(0, len(todo), size):
        store.upsert([StorePoint(point_id(c.chunk_id), vectors[c.chunk_id], ctx.bm25.document(c.embed_text), payload_for(c))
                      for c in todo[i : i + size]])
    ctx.points_since_open += len(todo)
    for c in cp.payload_only:
        store.overwrite_payload(point_id(c.chunk_id), payload_for(c))
    for i in range(0, len(cp.delete_points), 1000):
        store.delete(cp.delete_points[i : i + 1000])
    store.flush()
    return {"upserted_points": len(todo), "payload_updates": len(cp.payload_only), "deleted_points": len(cp.delete_points)}


def commit_batch(ctx: IndexContext, cp: ChunkPlan, quarantined: Sequence[Quarantined] = (), applied_file: AppliedFile | None = None,
                 keys: KeyChanges | None = None) -> None:
    assert cp.commit is not None
    cp.commit.quarantined = list(quarantined)
    cp.commit.applied_file = applied_file
    cp.commit.keys = keys
    ctx.ledger.commit_batch(cp.commit)


class StageCall(Protocol):
    """How a driver runs one stage: `call(stage, fn, *args)` returns what `fn(*args)` would. The
    core calls `fn` directly (`call_directly`); the Prefect flow runs the stage's task instead."""

    def __call__(self, stage: str, fn: Callable[..., Any], /, *args: Any) -> Any: ...


def call_directly(stage: str, fn: Callable[..., Any], /, *args: Any) -> Any:
    return fn(*args)


def timed_call(call: StageCall, timings: dict[str, float], at: dict[str, Any] | None = None) -> StageCall:
    """`call`, adding each stage's seconds to `timings` (and naming the running stage in `at["stage"]`)."""

    def timed(stage: str, fn: Callable[..., Any], /, *args: Any) -> Any:
        if at is not None:
            at["stage"] = stage
        t = time.perf_counter()
        try:
            return call(stage, fn, *args)
        finally:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t

    return timed


EmbedFn = Callable[[IndexContext, ChunkPlan, str], Vectors]  # (ctx, chunk plan, unit label) -> vectors


def apply_batch(
    ctx: IndexContext,
    records: Sequence[FeedRecord],
    feed: str,
    run_id: str,
    *,
    snapshot_deletes: Sequence[str] = (),
    quarantined: Sequence[Quarantined] = (),
    applied_file: AppliedFile | None = None,
    keys: KeyChanges | None = None,
    progress: ProgressFn | None = None,
    timings: dict[str, float] | None = None,
    while_encoding: Callable[[], None] | None = None,
    call: StageCall = call_directly,
    embed: EmbedFn | None = None,
    label: str = "",
) -> BatchCounts:
    """One validated unit's stages in the crash-safe order: plan, chunk, embed, write the store,
    commit the ledger, compact. The driver's per-unit body (`run_source`); tests call it alone.

    Without `embed` (vectors made in this process), the batch's texts are queued for the encoder
    workers and `while_encoding` runs before its vectors are awaited (the driver reads the next
    unit there); `embed(ctx, cp, label)` replaces that (a fan-out over a task runner's workers)."""
    run = timed_call(call, timings) if timings is not None else call
    plan = run("plan", plan_batch, ctx, list(records), feed, list(snapshot_deletes))
    cp = run("chunk", chunk_batch, ctx, plan, run_id)
    if embed is None:
        queue_embedding(ctx, cp.to_embed)
        if while_encoding is not None:
            run("ahead", while_encoding)
        embed = partial(embed_unit, progress=progress)
    vectors = run("embed", embed, ctx, cp, label)
    run("store", write_store, ctx, cp, vectors)
    run("ledger", commit_batch, ctx, cp, list(quarantined), applied_file, keys)
    run("compact", compact_store, ctx)
    return batch_counts(plan, cp, quarantined)


def batch_counts(plan: BatchPlan, cp: ChunkPlan, quarantined: Sequence[Quarantined] = ()) -> BatchCounts:
    c = plan.counts.model_copy()
    c.chunks_embedded = len(cp.to_embed)
    c.chunks_deleted = len(cp.delete_points)
    c.chunk_duplicates = cp.chunk_duplicates
    c.quarantined = len(quarantined)
    c.received += len(quarantined)  # every record read counts as received, good or bad
    return c


def new_run_id() -> str:
    return uuid.uuid4().hex


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
