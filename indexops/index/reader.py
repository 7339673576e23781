"""Readers of the index: what a RAG app, `indexops search` and the evaluate, regression and drift
flows open. A reader never opens the writer's shard: on Qdrant Edge it holds a published snapshot
(`indexops/index/replicas.py`) and moves to newer ones as they are published; on a Qdrant server it
reads the collection behind the live alias (the server handles concurrency).

    from indexops import Index

    with Index.open("ws") as index:                 # follows `live` and new snapshots by itself
        answer = index.search("what causes scurvy?", k=5)
        answer.snapshot_id                           # every hit comes from this snapshot

    Index.open("ws", snapshot="3f2a9c")              # a pinned, retained snapshot (yesterday's answers)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from indexops.eval.retrieval import SearchAnswer, search
from indexops.index import replicas
from indexops.index.context import IndexContext, open_collection, open_index
from indexops.index.snapshot import current_snapshot_id, publish_for_readers
from indexops.ledger import Ledger, LedgerBusy
from indexops.settings import Settings, load_settings
from indexops.store.edge import EdgeStore

ALIAS_CHECK_S = 2.0


def _target(workspace: Path, settings: Settings, snapshot: str | None) -> tuple[str | None, str | None]:
    """(collection, snapshot id or None for "the newest published") a reader should serve."""
    led = Ledger.for_workspace(workspace, settings.ledger.url)
    try:
        if snapshot:
            s = led.get_snapshot(snapshot)
            if s is not None:
                return s["collection"], s["snapshot_id"]
            for root in sorted((workspace / replicas.REPLICAS).glob("*")):  # a ledger that lost the row
                rep = replicas.find(root, snapshot)
                if rep is not None:
                    return rep.collection, rep.snapshot_id
            raise LookupError(f"unknown snapshot {snapshot!r}; `indexops snapshot list` shows the known ones")
        a = led.alias("live")
        if a is None:
            return None, None
        return a["collection"], (a["snapshot_id"] if a.get("pinned") else None)
    finally:
        led.close()


def open_snapshot(workspace: str | Path, settings: Settings, snapshot: str | None = None) -> IndexContext:
    """A read-only context on what the live alias serves, or on `snapshot` (id or prefix).

    On Qdrant Edge its store is a published replica held by a lease (released by `ctx.close()`),
    and `ctx.snapshot_id` names exactly what it holds.

    Raises:
        LookupError: unknown snapshot; `replicas.SnapshotNotRetained` when it is known but no longer kept;
            `replicas.NoPublishedSnapshot` when nothing was published yet and an ingest is running.
    """
    ws = Path(workspace)
    collection, sid = _target(ws, settings, snapshot)
    ctx = open_collection(ws, collection, settings.ledger.url) if collection else _configured_or_newest(ws, settings)
    try:
        _serve(ctx, sid)
        return ctx
    except BaseException:
        ctx.close()
        raise


def _serve(ctx: IndexContext, sid: str | None) -> None:
    """Point a reader context at what it answers from: on Qdrant Edge the leased replica of `sid`
    (HEAD's when None); on a server the collection's current content, which must be `sid` if given.

    Raises:
        replicas.SnapshotNotRetained: `sid` has no replica any more, or a server holds other content.
    """
    if ctx.settings.store.backend != "edge":
        now = current_snapshot_id(ctx.ledger, ctx.collection)
        if sid and sid != now:
            raise replicas.SnapshotNotRetained(
                f"snapshot {sid[:16]} is not what collection {ctx.collection} holds now ({now[:16]}): on a Qdrant "
                "server a collection serves its current content only (pinned reads need the embedded store)")
        ctx.snapshot_id = now
        return
    attach_replica(ctx, _lease(ctx, sid))


def _configured_or_newest(ws: Path, settings: Settings) -> IndexContext:
    """With no live alias yet: the configured recipe's collection, or, when that one has no
    snapshot, the newest snapshot's collection (a workspace built with another config)."""
    ctx = open_index(ws, settings)
    if ctx.ledger.latest_snapshot(ctx.collection) is not None:
        return ctx
    latest = ctx.ledger.latest_snapshot()
    if latest is None:
        return ctx
    ctx.close()
    return open_collection(ws, latest["collection"], settings.ledger.url)


def open_live(workspace: str | Path, settings: Settings) -> IndexContext:
    """The snapshot the `live` alias serves (with no alias yet: the configured recipe's collection,
    else the newest snapshot's)."""
    return open_snapshot(workspace, settings)


def _lease(ctx: IndexContext, sid: str | None) -> replicas.Lease:
    root = replicas.replicas_root(ctx.workspace, ctx.collection)
    try:
        return replicas.lease(root, sid)
    except replicas.NoPublishedSnapshot:
        if sid is None and publish_if_missing(ctx):
            return replicas.lease(root, None)
        raise


def publish_if_missing(ctx: IndexContext) -> bool:
    """Publish a collection that has none (an index built before replicas existed), when no ingest
    holds it; False when one does (it publishes when it commits)."""
    try:
        owner = ctx.ledger.acquire_lock(ctx.collection, wait_s=0.0)
    except LedgerBusy:
        return False
    try:
        if replicas.head(replicas.replicas_root(ctx.workspace, ctx.collection)) is None:  # else published meanwhile
            try:
                publish_for_readers(ctx)  # what an ingest publishes, from the writer's shard it opens
            finally:
                ctx.close_store()
        return True
    finally:
        ctx.ledger.release_lock(ctx.collection, owner)


def reader_of(ctx: IndexContext, snapshot: str | None = None) -> IndexContext:
    """A reader on a published snapshot of `ctx`'s collection (HEAD's by default) that shares its
    embedder, chunker and BM25 encoder (no second model load): e.g. to evaluate what a run just
    published. Close it on its own; `ctx` stays open."""
    r = dataclasses.replace(ctx, ledger=Ledger.for_workspace(ctx.workspace, ctx.settings.ledger.url), _store=None,
                            points_since_open=0, snapshot_id=None, lease=None)
    try:
        _serve(r, snapshot)
        return r
    except BaseException:
        r.close()
        raise


def attach_replica(ctx: IndexContext, lease: replicas.Lease) -> None:
    """Make `ctx` read the leased replica, letting go of the one it read before."""
    store = EdgeStore(lease.replica.shard, ctx.collection, ctx.embedder.dim, read_only=True)
    old_store, old_lease = ctx._store, ctx.lease
    ctx._store, ctx.lease, ctx.snapshot_id = store, lease, lease.replica.snapshot_id
    if old_store is not None:
        old_store.close()
    if old_lease is not None:
        old_lease.release()


class Index:
    """The index as a RAG app reads it, all day, while the flows keep it fresh.

    Follows the live alias and each newly published snapshot (checked before a search, at most every
    `serving.check_every_s`), or stays on one `snapshot` when opened with it. A search never fails
    because an ingest runs, and its hits all come from the snapshot its answer names.
    """

    def __init__(self, ctx: IndexContext, settings: Settings, pinned: str | None) -> None:
        self.ctx = ctx
        self.settings = settings
        self.pinned = pinned
        self._alias = self._read_alias()
        self._stamp = self._head_stamp()
        self._checked = time.monotonic()
        self._alias_checked = self._checked

    @classmethod
    def open(cls, workspace: str | Path, config: str | Path | Settings | None = None, snapshot: str | None = None) -> "Index":
        """Open a workspace for reading (`config`: a settings overlay path, or settings)."""
        settings = config if isinstance(config, Settings) else load_settings(config)
        return cls(open_snapshot(workspace, settings, snapshot), settings, snapshot)

    @property
    def snapshot_id(self) -> str:
        assert self.ctx.snapshot_id is not None
        return self.ctx.snapshot_id

    @property
    def collection(self) -> str:
        return self.ctx.collection

    def search(self, text: str, retriever: str | None = None, k: int = 10) -> SearchAnswer:
        """Top `k` documents for `text` (best chunk each), from one snapshot, named in the answer."""
        self._maybe_refresh()
        return search(self.ctx, text, retriever, k)

    def refresh(self) -> bool:
        """Move to what live serves now, if it moved; True when the snapshot changed."""
        before = self.ctx.snapshot_id
        alias = self._read_alias()
        if alias != self._alias and alias is not None and alias[0] != self.ctx.collection:
            new = open_snapshot(self.ctx.workspace, self.settings)  # another collection went live: its own recipe
            self.ctx.close()
            self.ctx = new
        elif self.ctx.settings.store.backend == "edge":
            sid = alias[2] if alias is not None and alias[1] else None
            if sid != self.ctx.snapshot_id or sid is None:
                lease = replicas.lease(replicas.replicas_root(self.ctx.workspace, self.ctx.collection), sid)
                if lease.replica.path == self.ctx.lease.replica.path:
                    lease.release()
                else:
                    attach_replica(self.ctx, lease)
        else:
            self.ctx.snapshot_id = current_snapshot_id(self.ctx.ledger, self.ctx.collection)
        self._alias = alias
        self._stamp = self._head_stamp()
        return self.ctx.snapshot_id != before

    def _maybe_refresh(self) -> None:
        if self.pinned:
            return
        now = time.monotonic()
        if now - self._checked < self.settings.serving.check_every_s:
            return
        self._checked = now
        moved = self._head_stamp() != self._stamp
        if now - self._alias_checked >= max(ALIAS_CHECK_S, self.settings.serving.check_every_s):
            self._alias_checked = now
            moved = moved or self._read_alias() != self._alias
        if moved:
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - keep answering from the snapshot we hold; the next search tries again
                self._stamp = None

    def _read_alias(self) -> tuple[str, bool, str | None] | None:
        a = self.ctx.ledger.alias("live")
        return None if a is None else (a["collection"], bool(a.get("pinned")), a["snapshot_id"])

    def _head_stamp(self) -> tuple[int, int] | None:
        return replicas.head_stamp(replicas.replicas_root(self.ctx.workspace, self.ctx.collection))

    def close(self) -> None:
        self.ctx.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
