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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexops.chunking import Chunker
from indexops.dedupe import BatchBuckets, NearDuplicateIndex, Signature
from indexops.embedders import Embedder, ProgressFn, cpu_cores, make_embedder, resolve_backend
from indexops.ids import canonical_json, normalize_text, point_id, sha256_hex, version_hash
from indexops.ledger import SCHEMA_VERSION, AppliedFile, BatchCommit, ChunkRow, DocRow, DocWrite, Ledger, multiset_term
from indexops.models import BatchCounts, Chunk, FeedRecord, Quarantined
from indexops.settings import Settings
from indexops.sparse import Bm25Encoder
from indexops.store import StorePoint, VectorStore, open_store

if TYPE_CHECKING:
    from indexops.embed_pool import PooledEmbedder

_MOD = 1 << 256


@dataclass
class IndexContext:
    """Everything a batch needs: settings, ledger, store and the recipe's components."""

    settings: Settings
    workspace: Path
    ledger: Ledger
    embedder: Embedder
    chunker: Chunker
    bm25: Bm25Encoder
    near: NearDuplicateIndex | None
    recipe: dict[str, Any]
    collection: str
    _store: VectorStore | None = None
    points_since_open: int = 0  # written since the store was opened or last optimized
    snapshot_id: str | None = None  # a reader's: the published snapshot its store holds (indexops/reader.py)
    lease: Any = None  # a reader's hold on that snapshot's replica (replicas.Lease)

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            s = self.settings.store
            self._store = open_store(s.backend, self.workspace, self.collection, self.embedder.dim, s.url, s.api_key_env,
                                     s.shards, s.replication_factor, s.memory)
        return self._store

    @property
    def pool(self) -> PooledEmbedder | None:
        """The embedder when it is an encoder pool (texts can be queued ahead, with token counts), else None."""
        return self.embedder if hasattr(self.embedder, "prefetch") else None

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        self.points_since_open = 0

    def close(self) -> None:
        try:
            self.close_store()
        finally:
            if self.lease is not None:
                self.lease.release()
                self.lease = None
            self.ledger.close()


def compact_store(ctx: IndexContext) -> bool:
    """Between batches, once `compact_store_every_points` points went into the Edge shard: index
    its in-memory appendable segment into an on-disk one (or, for shards that would merge
    everything to do so, close it; it reopens on next use), then hand freed heap back to the OS.
    Measured on 10k-document batch files (`bench/load_memory.py`): RSS grew ~40 MiB per 10k
    points written through an open shard (60k: 441 MiB); with this it is ~230 MiB after each step
    and peaks at what one step takes (543 MiB). Both flush first, so a crash loses nothing more
    than it would have."""
    n = ctx.settings.ingest.compact_store_every_points
    if n is None or ctx.settings.store.backend != "edge" or ctx.points_since_open < n:
        return False
    if getattr(ctx.store, "indexes_in_steps", False):
        ctx.store.optimize()
        ctx.points_since_open = 0
    else:
        ctx.close_store()
    trim_heap()
    return True


def trim_heap() -> None:
    """glibc keeps freed memory in its arenas; malloc_trim returns it (a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def model_label(model: str) -> str:
    """The model's name in the recipe: a path is reduced to its last part so machines agree."""
    p = Path(model)
    return p.name if (p.is_absolute() or model.startswith(".")) else model


def build_recipe(settings: Settings, embedder: Embedder, chunker: Chunker, bm25: Bm25Encoder) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "chunker": chunker.config(),
        "embedding": {
            "model": model_label(settings.embedding.model),
            "fingerprint": embedder.fingerprint(),
            "dim": embedder.dim,
            "normalize": settings.embedding.normalize,
        },
        "bm25": bm25.recipe(),
    }


def pooled(embedder: Embedder, settings: Settings) -> Embedder:
    """The embedder, spread over worker processes when the config and the machine have cores for it."""
    e = settings.embedding
    cores = cpu_cores()
    workers = cores if e.workers is None else e.workers
    if e.model == "hashing" or e.device != "cpu" or workers < 2:
        return embedder
    from indexops.embed_pool import PooledEmbedder

    return PooledEmbedder(embedder, embedding_spec(settings), workers, min_texts=e.pool_min_texts, cores=cores)


def embedding_spec(settings: Settings) -> dict[str, Any]:
    """`make_embedder` keyword arguments for the configured model (backend resolved): the same
    embedder in this process, in an encoder worker or on a Dask worker."""
    e = settings.embedding
    return {"model": e.model, "dim": e.dim, "batch_size": e.batch_size, "device": e.device, "normalize": e.normalize,
            "backend": resolve_backend(e.backend, e.device)}


def needs_optimize(ctx: IndexContext, points_written: int) -> bool:
    """After a bulk write the in-process store's segments are merged once, so the next open reads an
    index instead of every appended point (measured: 60k points, load 0.84 s / 248 MiB -> 0.18 s / 138 MiB)."""
    n = ctx.settings.ingest.optimize_after_points
    return n is not None and points_written >= n and ctx.settings.store.backend == "edge"


def recipe_hash(recipe: dict[str, Any]) -> str:
    return sha256_hex(canonical_json(recipe))


def open_index(workspace: str | Path, settings: Settings) -> IndexContext:
    """Open the ledger and the recipe's collection in a workspace (created if missing)."""
    ws = Path(workspace)
    ws.mkdir(parents=True, exist_ok=True)
    if settings.embedding.backend == "auto":  # the ledger records the backend that made the vectors
        settings = settings.model_copy(deep=True)
        settings.embedding.backend = resolve_backend("auto", settings.embedding.device)  # type: ignore[assignment]
    embedder = pooled(make_embedder(**embedding_spec(settings)), settings)
    chunker = Chunker(settings.chunking, embedder.tokenizer(), tokenizer_id=embedder.fingerprint()[:16])
    bm25 = Bm25Encoder(settings.bm25)
    recipe = build_recipe(settings, embedder, chunker, bm25)
    collection = f"{settings.store.collection_prefix}-{recipe_hash(recipe)[:12]}"
    ledger = Ledger.for_workspace(ws, settings.ledger.url)
    ledger.ensure_state(collection, recipe, settings.model_dump(mode="json"))
    near = NearDuplicateIndex(settings.dedupe) if settings.dedupe.near else None
    return IndexContext(settings, ws, ledger, embedder, chunker, bm25, near, recipe, collection)


def open_collection(workspace: str | Path, collection: str, ledger_url: str | None = None) -> IndexContext:
    """Reopen a collection with the settings it was built with (e.g. a candidate recipe).

    Raises:
        LookupError: the ledger does not know the collection.
        RuntimeError: the recipe no longer matches (the model's weights changed on disk).
    """
    led = Ledger.for_workspace(workspace, ledger_url)
    try:
        stored = led.collection_settings(collection)
    finally:
        led.close()
    if stored is None:
        raise LookupError(f"collection {collection!r} is not in the ledger of {workspace}")
    # collections stored before `embedding.backend` existed were all encoded by torch
    stored.setdefault("embedding", {}).setdefault("backend", "torch")
    settings = Settings.model_validate(stored)
    if ledger_url:
        settings.ledger.url = ledger_url
    ctx = open_index(workspace, settings)
    if ctx.collection != collection:
        ctx.close()
        raise RuntimeError(
            f"collection {collection!r} was built with a recipe that no longer reproduces (now {ctx.collection!r}): "
            "the embedding model's weights or the chunker changed — vendor drift; rebuild and re-evaluate"
        )
    return ctx


def rebuild_batches(ctx: IndexContext, batch: int | None = None):
    """Plans that (re)chunk every active ledger document into this context's collection.

    Used for blue/green recipes: the new collection is built from the ledger, not from feeds.
    Resumable: chunks already in the collection are not embedded again.
    """
    n = batch or ctx.settings.ingest.batch_docs
    for rows in ctx.ledger.iter_active_documents(n):
        plan = BatchPlan(feed="__rebuild__", write_docs=False)
        for r in rows:
            plan.docs[r.doc_id] = _rewrite(r)
        plan.reindex = [r.doc_id for r in rows]
        plan.counts.received = len(rows)
        plan.counts.upserted = len(rows)
        yield plan


def rebuild_collection(ctx: IndexContext, run_id: str, batch: int | None = None) -> int:
    """Build (or finish building) this context's collection from the ledger; returns chunks embedded."""
    n = 0
    for plan in rebuild_batches(ctx, batch):
        cp = chunk_batch(ctx, plan, run_id)
        write_store(ctx, cp, embed_chunks(ctx, cp.to_embed))
        commit_batch(ctx, cp)
        compact_store(ctx)
        n += len(cp.to_embed)
    return n


def snapshot_id_for(acc: int, n_chunks: int, recipe: dict[str, Any]) -> str:
    """Content address of the index: the chunk multiset (sum of per-chunk hashes) plus the recipe."""
    return sha256_hex("indexops-snapshot-v1", f"{acc % _MOD:064x}", str(n_chunks), canonical_json(recipe))


# ------------------------------------------------------------------------------------------
# Stage 1: plan
# ------------------------------------------------------------------------------------------


@dataclass
class BatchPlan:
    feed: str
    docs: dict[str, DocWrite] = field(default_factory=dict)  # rows to write
    reindex: list[str] = field(default_factory=list)  # active after the batch and needing chunks
    old_active: set[str] = field(default_factory=set)  # active before, whose chunks get diffed
    touched_updated_at: dict[str, Any] = field(default_factory=dict)
    counts: BatchCounts = field(default_factory=BatchCounts)
    write_docs: bool = True  # False when rebuilding a collection from documents already in the ledger


def last_record_wins(records: Sequence[FeedRecord]) -> list[FeedRecord]:
    """Inside one batch the last record of an id wins."""
    by_id: dict[str, FeedRecord] = {}
    for r in records:
        by_id.pop(r.id, None)
        by_id[r.id] = r
    return list(by_id.values())


def plan_batch(ctx: IndexContext, records: Sequence[FeedRecord], feed: str, snapshot_deletes: Sequence[str] = ()) -> BatchPlan:
    """Decide per document: unchanged, stale, deleted, duplicate, or (re)index.

    Args:
        records: validated records of one batch (any order; last of an id wins).
        feed: the feed the batch belongs to.
        snapshot_deletes: ids a full-snapshot source no longer contains.

    Returns:
        The plan; nothing is written yet.
    """
    plan = BatchPlan(feed=feed)
    recs = last_record_wins(records)
    for did in snapshot_deletes:
        recs.append(FeedRecord(id=did, op="delete"))
    plan.counts.received = len(records)
    existing = ctx.ledger.get_documents([r.id for r in recs])

    candidates: dict[str, DocWrite] = {}
    norms: dict[str, str] = {}  # normalised texts: the exact hash and the MinHash read the same form
    leaving: set[str] = set()  # active docs whose current content stops being the kept copy

    for r in recs:
        old = existing.get(r.id)
        if old and old.updated_at and r.updated_at and r.updated_at < old.updated_at:
            plan.counts.stale += 1
            continue
        if r.op == "delete":
            if old is None or old.status == "deleted":
                plan.counts.delete_unknown += 1
                continue
            plan.counts.deleted += 1
            if old.status == "active":
                leaving.add(r.id)
                plan.old_active.add(r.id)
            plan.docs[r.id] = DocWrite(
                doc_id=r.id, feed=old.feed, status="deleted", title="", text=None, metadata={},
                updated_at=r.updated_at or old.updated_at, version_hash=None, text_hash=None, version=old.version + 1,
            )
            continue
        text = r.text or ""
        vh = version_hash(r.title, text, r.metadata)
        if old is not None and old.status != "deleted" and old.version_hash == vh:
            plan.counts.unchanged += 1
            if r.updated_at and (old.updated_at is None or r.updated_at > old.updated_at):
                plan.touched_updated_at[r.id] = r.updated_at
            continue
        norms[r.id] = normalize_text(text)
        th = sha256_hex(norms[r.id])  # == text_hash(text)
        if old is not None and old.status == "active":
            plan.old_active.add(r.id)
            if old.text_hash != th:
                leaving.add(r.id)
        candidates[r.id] = DocWrite(
            doc_id=r.id, feed=feed, status="active", title=r.title, text=text, metadata=r.metadata,
            updated_at=r.updated_at, version_hash=vh, text_hash=th,
            version=(old.version + 1) if old is not None else 1,
        )

    # Duplicates whose kept copy leaves get another chance: one of them may become the kept copy.
    for d in ctx.ledger.duplicates_of(leaving):
        if d.doc_id in candidates or d.doc_id in plan.docs:
            continue
        candidates[d.doc_id] = _rewrite(d, status="active")

    _dedupe(ctx, plan, candidates, leaving, norms)
    kept_after = {d for d in candidates if plan.docs[d].status == "active"}
    in_batch = {r.id for r in recs}
    plan.counts.promoted = len(kept_after - in_batch)
    plan.counts.upserted = len(kept_after & in_batch)
    plan.reindex = sorted(kept_after)
    return plan


def _rewrite(d: DocRow, **changes: Any) -> DocWrite:
    w = DocWrite(
        doc_id=d.doc_id, feed=d.feed, status=d.status, title=d.title, text=d.text, metadata=d.metadata,
        updated_at=d.updated_at, version_hash=d.version_hash, text_hash=d.text_hash, duplicate_of=d.duplicate_of,
        dup_kind=d.dup_kind, minhash=d.minhash, version=d.version,
    )
    for k, v in changes.items():
        setattr(w, k, v)
    return w


def _dedupe(ctx: IndexContext, plan: BatchPlan, candidates: dict[str, DocWrite], leaving: set[str], norms: dict[str, str]) -> None:
    """Exact duplicates keep the smallest id of their group (order-independent); near duplicates
    keep whichever copy was indexed first and are checked against the whole index via LSH."""
    cfg = ctx.settings.dedupe
    excluded = set(leaving) | set(candidates)  # their ledger rows no longer describe them
    ids = sorted(candidates)

    ledger_exact: dict[str, list[str]] = {}
    if cfg.exact:
        found = ctx.ledger.active_by_text_hash(candidates[d].text_hash for d in ids)
        ledger_exact = {h: sorted(x for x in v if x not in excluded) for h, v in found.items()}

    sigs: dict[str, Signature] = {}
    bucket_keys: dict[str, list[int]] = {}
    ledger_buckets: dict[str, set[str]] = {}
    ledger_sigs: dict[str, Signature] = {}
    if ctx.near is not None:
        texts = [norms[d] if d in norms else normalize_text(candidates[d].text or "") for d in ids]
        for d, sig in zip(ids, ctx.near.signatures(texts, normalized=True)):
            sigs[d] = sig
            bucket_keys[d] = ctx.near.buckets(sig)
        ledger_buckets = ctx.ledger.lsh_candidates(k for d in ids for k in bucket_keys[d])
        cand_ids = {x for s in ledger_buckets.values() for x in s} - excluded
        for did, row in ctx.ledger.get_documents(cand_ids).items():
            if row.status == "active" and row.minhash:
                ledger_sigs[did] = Signature.from_bytes(row.minhash)

    batch_exact: dict[str, str] = {}
    batch_near = BatchBuckets()
    demoted: dict[str, str] = {}  # ledger doc -> new kept copy

    for d in ids:
        w = candidates[d]
        if cfg.exact:
            th = w.text_hash or ""
            holders = [x for x in ledger_exact.get(th, []) if x not in demoted]
            if th in batch_exact:
                holders.append(batch_exact[th])
            if holders:
                keeper = min(holders)
                if keeper < d:
                    _mark_dup(plan, w, keeper, "exact", 1.0)
                    plan.counts.exact_duplicates += 1
                    continue
                # d is the smallest id of its group. Ids are processed in order, so every holder is a
                # larger-id kept copy in the ledger: it becomes d's duplicate.
                for h in holders:
                    demoted[h] = d
            batch_exact[th] = d
        if ctx.near is not None:
            sig = sigs[d]
            pool = {x for k in bucket_keys[d] for x in ledger_buckets.get(k, ())} & set(ledger_sigs)
            pool -= set(demoted)
            scored = [(sig.jaccard(ledger_sigs[x]), x) for x in pool]
            scored += [(sig.jaccard(batch_near.signatures[x]), x) for x in batch_near.candidates(bucket_keys[d])]
            matches = [m for m in scored if m[0] >= cfg.near_threshold]
            if matches:
                sim, of = min(matches, key=lambda m: (-m[0], m[1]))  # most similar, then smallest id
                _mark_dup(plan, w, of, "near", sim)
                plan.counts.near_duplicates += 1
                continue
            w.minhash = sig.to_bytes()
            w.buckets = bucket_keys[d]
            batch_near.add(d, sig, bucket_keys[d])
        w.status = "active"
        w.duplicate_of = None
        w.dup_kind = None
        plan.docs[d] = w

    if demoted:
        rows = ctx.ledger.get_documents(demoted)
        for old_id, new_id in demoted.items():
            plan.docs[old_id] = _rewrite(rows[old_id], status="duplicate", duplicate_of=new_id, dup_kind="exact", minhash=None)
            plan.old_active.add(old_id)
            plan.counts.exact_duplicates += 1
        for dup in ctx.ledger.duplicates_of(demoted):
            if dup.doc_id not in plan.docs:
                plan.docs[dup.doc_id] = _rewrite(dup, duplicate_of=demoted[dup.duplicate_of])


def _mark_dup(plan: BatchPlan, w: DocWrite, of: str, kind: str, sim: float) -> None:
    w.status = "duplicate"
    w.duplicate_of = of
    w.dup_kind = kind
    w.similarity = sim
    w.minhash = None
    w.buckets = []
    plan.docs[w.doc_id] = w


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


def chunk_ahead(ctx: IndexContext, records: Sequence[FeedRecord]) -> int:
    """Speculate on the next batch while this one encodes: chunk its records that the committed
    ledger says changed and queue their new texts behind this batch's. Decides nothing: that
    batch is planned and chunked as always once this one commits, and finds its chunks made and
    its vectors encoded or on the way (anything this guessed wrong is made then, or dropped).
    Returns the texts queued (0 where the embedder has no workers to keep busy)."""
    if ctx.pool is None:
        return 0
    recs = [r for r in last_record_wins(records) if r.op != "delete"]
    old = ctx.ledger.get_documents([r.id for r in recs])
    docs = []
    for r in recs:
        o = old.get(r.id)
        if o is None or o.status == "deleted" or o.version_hash != version_hash(r.title, r.text or "", r.metadata):
            docs.append((r.id, r.title, r.text or "", r.metadata))
    if not docs:
        return 0
    indexed = {(row.chunk_id, row.embed_hash) for rows in ctx.ledger.chunks_for_docs(ctx.collection, [d[0] for d in docs]).values()
               for row in rows}
    chunks = [c for res in ctx.chunker.chunk_ahead(docs) for c in res.chunks if (c.chunk_id, embed_hash(c)) not in indexed]
    texts, lengths, ids = encoder_inputs(chunks)
    ctx.pool.prefetch(texts, lengths=lengths, ids=ids)
    return len(texts)


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


def commit_batch(ctx: IndexContext, cp: ChunkPlan, quarantined: Sequence[Quarantined] = (), applied_file: AppliedFile | None = None) -> None:
    assert cp.commit is not None
    cp.commit.quarantined = list(quarantined)
    cp.commit.applied_file = applied_file
    ctx.ledger.commit_batch(cp.commit)


def apply_batch(
    ctx: IndexContext,
    records: Sequence[FeedRecord],
    feed: str,
    run_id: str,
    *,
    snapshot_deletes: Sequence[str] = (),
    quarantined: Sequence[Quarantined] = (),
    applied_file: AppliedFile | None = None,
    progress: ProgressFn | None = None,
    timings: dict[str, float] | None = None,
    while_encoding: Callable[[], None] | None = None,
) -> BatchCounts:
    """All five stages for one batch, in the crash-safe order. Used outside Prefect (tests, bench).

    `while_encoding` runs once this batch's texts are queued for the encoder workers and before
    its vectors are awaited (the driver reads the next unit there)."""
    t = timings if timings is not None else {}
    t0 = time.perf_counter()
    plan = plan_batch(ctx, records, feed, snapshot_deletes)
    t1 = time.perf_counter()
    cp = chunk_batch(ctx, plan, run_id)
    queue_embedding(ctx, cp.to_embed)
    t2 = time.perf_counter()
    if while_encoding is not None:
        while_encoding()
    t3 = time.perf_counter()
    vecs = embed_chunks(ctx, cp.to_embed, progress)
    t4 = time.perf_counter()
    write_store(ctx, cp, vecs)
    t5 = time.perf_counter()
    commit_batch(ctx, cp, quarantined, applied_file)
    t6 = time.perf_counter()
    stages = {"plan": t1 - t0, "chunk": t2 - t1, "ahead": t3 - t2, "embed": t4 - t3, "store": t5 - t4, "ledger": t6 - t5}
    if compact_store(ctx):
        stages["compact"] = time.perf_counter() - t6
    if while_encoding is None:
        del stages["ahead"]
    for k, v in stages.items():
        t[k] = t.get(k, 0.0) + v
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


ProgressCallback = Callable[[int, int], None]
