"""The index a run works on: `IndexContext` (settings, ledger, store and the recipe's components),
how a workspace's index is opened, its recipe and snapshot id, and store upkeep between batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexops.embed.cpu import cpu_cores
from indexops.embed.factory import make_embedder, resolve_backend
from indexops.embed.protocol import Embedder, EncoderPool
from indexops.ids import canonical_json, sha256_hex
from indexops.ingest.chunking import Chunker
from indexops.ingest.dedupe import NearDuplicateIndex
from indexops.ledger import SCHEMA_VERSION, Ledger
from indexops.settings import Settings
from indexops.store.factory import open_store
from indexops.store.protocol import IndexesInSteps, SupportsOptimize, VectorStore
from indexops.store.sparse import Bm25Encoder

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
    snapshot_id: str | None = None  # a reader's: the published snapshot its store holds (indexops/index/reader.py)
    lease: Any = None  # a reader's hold on that snapshot's replica (replicas.Lease)

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            s = self.settings.store
            self._store = open_store(s.backend, self.workspace, self.collection, self.embedder.dim, s.url, s.api_key_env,
                                     s.shards, s.replication_factor, s.memory)
        return self._store

    @property
    def pool(self) -> EncoderPool | None:
        """The embedder when it is an encoder pool (texts can be queued ahead, with token counts), else None."""
        return self.embedder if isinstance(self.embedder, EncoderPool) else None

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
    store = ctx.store
    if isinstance(store, IndexesInSteps) and store.indexes_in_steps:
        store.optimize()
        ctx.points_since_open = 0
    else:
        ctx.close_store()
    trim_heap()
    return True


def optimize_index(ctx: IndexContext) -> bool:
    """Merge the store's segments (once after a bulk write, `needs_optimize`, or in maintenance);
    False for a store that optimizes on its own (a Qdrant server)."""
    store = ctx.store
    return store.optimize() if isinstance(store, SupportsOptimize) else False


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
    from indexops.embed.pool import PooledEmbedder

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
    ledger.ensure_state(collection, recipe, settings.dump_without_credentials())
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

def snapshot_id_for(acc: int, n_chunks: int, recipe: dict[str, Any]) -> str:
    """Content address of the index: the chunk multiset (sum of per-chunk hashes) plus the recipe."""
    return sha256_hex("indexops-snapshot-v1", f"{acc % _MOD:064x}", str(n_chunks), canonical_json(recipe))

