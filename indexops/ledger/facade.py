"""The ledger: what the index should hold, per document and chunk, plus cursors, quarantine,
duplicates, snapshots and runs. SQLAlchemy Core, so a SQLite file and a Postgres URL behave alike.

The ledger is the commit point of every batch: vector-store writes happen first and are
idempotent (deterministic point ids), then one ledger transaction records the batch.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, create_engine, delete, event, func, insert, literal, select, tuple_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from indexops.ledger.schema import (
    _after_lsh_insert,
    _counter,
    _create_schema,
    _fold_lsh,
    _insert_ignoring_existing,
    _set_counter,
    _sqlite_pragmas,
    alias_history,
    aliases,
    applied_files,
    chunks,
    counters,
    cursors,
    doc_counts,
    doc_history,
    documents,
    eval_queries,
    eval_runs,
    index_state,
    locks,
    lsh_bands,
    lsh_recent,
    pack_bands,
    quarantine,
    query_sets,
    runs,
    snapshots,
    unpack_bands,
    utcnow,
)
from indexops.models import Quarantined

_IN_CHUNK = 500
_MOD = 1 << 256


def _utc(dt: datetime | None) -> datetime | None:
    """Store instants in UTC: SQLite drops offsets, so a +02:00 time would shift by two hours."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _clean(s: str | None, n: int | None = None) -> str | None:
    """Quarantine rows hold hostile input: PostgreSQL refuses NUL and over-long keys."""
    if s is None:
        return None
    s = s.replace("\x00", "\\0")
    return s[:n] if n else s


def _quarantine_rows(items: Sequence[Quarantined], run_id: str, now: datetime) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "feed": _clean(q.feed, 512), "file": _clean(q.file, 1024), "line": q.line,
         "record_id": _clean(q.record_id, 512), "reason": _clean(q.reason), "excerpt": _clean(q.excerpt), "created_at": now}
        for q in items
    ]


def _aware(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything in the ledger is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


def _chunks_of(seq: Sequence[Any], n: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@dataclass
class DocRow:
    doc_id: str
    feed: str
    status: str
    title: str
    text: str | None
    metadata: dict[str, Any]
    updated_at: datetime | None
    version_hash: str | None
    text_hash: str | None
    duplicate_of: str | None
    dup_kind: str | None
    minhash: bytes | None
    version: int


@dataclass
class ChunkRow:
    chunk_id: str
    doc_id: str
    position: int
    chunk_hash: str
    embed_hash: str
    point_id: str
    n_chars: int = 0


@dataclass
class DocWrite:
    """A document row to write at batch commit (insert or replace)."""

    doc_id: str
    feed: str
    status: str
    title: str
    text: str | None
    metadata: dict[str, Any]
    updated_at: datetime | None
    version_hash: str | None
    text_hash: str | None
    duplicate_of: str | None = None
    dup_kind: str | None = None
    similarity: float | None = None
    minhash: bytes | None = None
    buckets: list[int] = field(default_factory=list)  # LSH band keys
    version: int = 1


@dataclass
class BatchCommit:
    """Everything one batch changes in the ledger, applied in one transaction."""

    collection: str
    feed: str
    run_id: str
    docs: list[DocWrite] = field(default_factory=list)
    touched_updated_at: dict[str, datetime] = field(default_factory=dict)
    chunk_deletes: list[str] = field(default_factory=list)
    chunk_inserts: list[ChunkRow] = field(default_factory=list)
    chunk_hash_updates: list[tuple[str, str]] = field(default_factory=list)  # (chunk_id, new chunk_hash)
    acc_delta: int = 0
    chunk_count_delta: int = 0
    quarantined: list[Quarantined] = field(default_factory=list)
    applied_file: AppliedFile | tuple[str, str, int] | None = None  # (file_name, file_hash, records[, size, mtime_ns])


class AppliedFile(NamedTuple):
    """A batch file as it was applied: its hash, records, and the size and mtime the hash belongs to."""

    name: str
    sha256: str
    records: int
    size: int | None = None
    mtime_ns: int | None = None


def multiset_term(chunk_id: str, chunk_hash: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{chunk_id}\x1f{chunk_hash}".encode()).digest(), "big")


class LedgerBusy(RuntimeError):
    """Another ingest holds the index lock."""


class Ledger:
    """SQLAlchemy-backed ledger. One instance per process; create tables on open."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        _create_schema(self.engine)

    @classmethod
    def for_workspace(cls, workspace: str | Path, url: str | None = None) -> "Ledger":
        if url:
            return cls(url)
        ws = Path(workspace)
        ws.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{ws.resolve() / 'ledger.db'}")

    def close(self) -> None:
        self.engine.dispose()

    # ---- documents -------------------------------------------------------------------------
    def get_documents(self, doc_ids: Iterable[str]) -> dict[str, DocRow]:
        ids = sorted(set(doc_ids))
        out: dict[str, DocRow] = {}
        with self.engine.connect() as c:
            for part in _chunks_of(ids):
                for r in c.execute(select(documents).where(documents.c.doc_id.in_(part))):
                    out[r.doc_id] = _doc_row(r)
        return out

    def active_by_text_hash(self, hashes: Iterable[str]) -> dict[str, list[str]]:
        hs = sorted(set(hashes))
        out: dict[str, list[str]] = {}
        with self.engine.connect() as c:
            for part in _chunks_of(hs):
                q = select(documents.c.text_hash, documents.c.doc_id).where(
                    documents.c.text_hash.in_(part), documents.c.status == "active"
                )
                for th, did in c.execute(q):
                    out.setdefault(th, []).append(did)
        return out

    def lsh_candidates(self, buckets: Iterable[int]) -> dict[int, set[str]]:
        """band key -> ids of active documents that have it now (indexed lookups per batch, never a
        scan): rows a document left behind under older bands, or once it was no longer active,
        are dropped here by its current `bands`."""
        bs = sorted(set(buckets))
        pairs: set[tuple[int, str]] = set()
        with self.engine.connect() as c:
            for part in _chunks_of(bs):
                for t in (lsh_bands, lsh_recent):
                    pairs.update((b, d) for b, d in c.execute(select(t.c.band, t.c.doc_id).where(t.c.band.in_(part))))
            current = _current_bands(c, {d for _, d in pairs})
        out: dict[int, set[str]] = {}
        for b, d in pairs:
            if d in current and (current[d] is None or b in current[d]):  # type: ignore[operator]
                out.setdefault(b, set()).add(d)
        return out

    def lsh_rows(self) -> dict[str, int]:
        """Rows in each LSH tier, rows documents left behind included (what `prune_lsh` would thin)."""
        with self.engine.connect() as c:
            return {t.name: int(c.execute(select(func.count()).select_from(t)).scalar_one()) for t in (lsh_bands, lsh_recent)}

    def prune_lsh(self, page: int = 50_000) -> int:
        """Fold `lsh_recent`, then delete the `lsh_bands` rows `lsh_candidates` would drop (rows
        documents left behind when they changed or left), walking the table in key order a page
        at a time; returns the rows deleted from either. O(index): for maintenance, never for an ingest."""
        with self.engine.connect() as c:
            recent = int(c.execute(select(func.count()).select_from(lsh_recent)).scalar_one())
        removed, last = recent - self.fold_lsh(), None  # the fold leaves out rows of documents that left, and repeats
        while True:
            with self.engine.begin() as c:
                q = select(lsh_bands.c.band, lsh_bands.c.doc_id).order_by(lsh_bands.c.band, lsh_bands.c.doc_id).limit(page)
                if last is not None:
                    q = q.where(tuple_(lsh_bands.c.band, lsh_bands.c.doc_id) > tuple_(literal(last[0], BigInteger), literal(last[1])))
                rows = [(int(b), d) for b, d in c.execute(q)]
                if not rows:
                    break
                last = rows[-1]
                current = _current_bands(c, {d for _, d in rows})
                stale = [(b, d) for b, d in rows if d not in current or (current[d] is not None and b not in current[d])]  # type: ignore[operator]
                for part in _chunks_of(stale):
                    c.execute(delete(lsh_bands).where(tuple_(lsh_bands.c.band, lsh_bands.c.doc_id).in_(part)))
                if stale:
                    _set_counter(c, "lsh_bands_rows", max(0, (_counter(c, "lsh_bands_rows") or 0) - len(stale)))
                removed += len(stale)
        return removed

    def fold_lsh(self) -> int:
        """Move `lsh_recent` into `lsh_bands` now, in key order, leaving out rows of documents no
        longer active; returns the rows moved. Ingest does this on its own (see `lsh_recent`)."""
        with self.engine.begin() as c:
            return _fold_lsh(c)

    def duplicates_of(self, doc_ids: Iterable[str]) -> list[DocRow]:
        ids = sorted(set(doc_ids))
        out: list[DocRow] = []
        with self.engine.connect() as c:
            for part in _chunks_of(ids):
                q = select(documents).where(documents.c.duplicate_of.in_(part), documents.c.status == "duplicate")
                out.extend(_doc_row(r) for r in c.execute(q))
        return out

    def active_doc_ids(self, feed: str | None = None) -> set[str]:
        q = select(documents.c.doc_id).where(documents.c.status.in_(("active", "duplicate")))
        if feed is not None:
            q = q.where(documents.c.feed == feed)
        with self.engine.connect() as c:
            return set(c.execute(q).scalars())

    def iter_active_documents(self, batch: int = 1000) -> Iterator[list[DocRow]]:
        """Stream active documents in id order (for rebuilding a collection from the ledger)."""
        last = ""
        with self.engine.connect() as c:
            while True:
                q = (
                    select(documents)
                    .where(documents.c.status == "active", documents.c.doc_id > last)
                    .order_by(documents.c.doc_id)
                    .limit(batch)
                )
                rows = [_doc_row(r) for r in c.execute(q)]
                if not rows:
                    return
                yield rows
                last = rows[-1].doc_id

    def document_counts(self) -> dict[str, int]:
        """Documents per status (only statuses that have any)."""
        with self.engine.connect() as c:
            rows = c.execute(select(doc_counts.c.status, doc_counts.c.n).where(doc_counts.c.n > 0)).all()
        return {s: int(n) for s, n in rows}

    def doc_versions(self) -> dict[str, str]:
        """doc_id -> version_hash of the active documents (what a snapshot holds)."""
        with self.engine.connect() as c:
            q = select(documents.c.doc_id, documents.c.version_hash).where(documents.c.status == "active")
            return {d: v for d, v in c.execute(q)}

    # ---- chunks ------------------------------------------------------------------------------
    def chunks_for_docs(self, collection: str, doc_ids: Iterable[str]) -> dict[str, list[ChunkRow]]:
        ids = sorted(set(doc_ids))
        out: dict[str, list[ChunkRow]] = {}
        with self.engine.connect() as c:
            for part in _chunks_of(ids):
                q = select(chunks).where(chunks.c.collection == collection, chunks.c.doc_id.in_(part))
                for r in c.execute(q):
                    out.setdefault(r.doc_id, []).append(_chunk_row(r))
        return out

    def iter_chunks(self, collection: str, batch: int = 5000, order: str = "chunk_id") -> Iterator[list[ChunkRow]]:
        """Stream a collection's chunk rows one page at a time (keyset paging on `order`).

        With `order="point_id"`: point ids are canonical lower-case UUID strings with hyphens at
        fixed places, so every collation (SQLite BINARY, PostgreSQL C or a locale) orders them as
        Python compares them; `reconcile` merge-joins this stream with the store's scroll.
        """
        col = chunks.c[order]
        last = ""
        with self.engine.connect() as c:
            while True:
                q = select(chunks).where(chunks.c.collection == collection, col > last).order_by(col).limit(batch)
                rows = [_chunk_row(r) for r in c.execute(q)]
                if not rows:
                    return
                yield rows
                last = getattr(rows[-1], order)

    def iter_chunks_by_point(self, collection: str, batch: int = 1000) -> Iterator[list[ChunkRow]]:
        return self.iter_chunks(collection, batch, order="point_id")

    # ---- state, cursors, files ------------------------------------------------------------
    def state(self, collection: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(index_state).where(index_state.c.collection == collection)).first()
        if r is None:
            return None
        return {"acc": int(r.acc, 16), "chunks": r.chunks, "recipe": json.loads(r.recipe_json), "snapshot_id": r.snapshot_id}

    def ensure_state(self, collection: str, recipe: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
        try:
            with self.engine.begin() as c:
                if c.execute(select(index_state.c.collection).where(index_state.c.collection == collection)).first():
                    return
                c.execute(
                    insert(index_state).values(
                        collection=collection, acc="0" * 64, chunks=0, recipe_json=json.dumps(recipe, sort_keys=True),
                        settings_json=json.dumps(settings, sort_keys=True, default=str) if settings else None,
                    )
                )
        except IntegrityError:
            pass  # another process opening the same new index inserted the row first: same content

    def set_accumulator(self, collection: str, acc: int, n_chunks: int) -> None:
        """Overwrite the running snapshot sum and chunk count (a repair after a full recount)."""
        with self.engine.begin() as c:
            c.execute(update(index_state).where(index_state.c.collection == collection).values(acc=f"{acc % _MOD:064x}", chunks=n_chunks))

    def collection_settings(self, collection: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(index_state.c.settings_json).where(index_state.c.collection == collection)).first()
        return json.loads(r.settings_json) if r and r.settings_json else None

    def collections(self) -> list[str]:
        with self.engine.connect() as c:
            return list(c.execute(select(index_state.c.collection).order_by(index_state.c.collection)).scalars())

    # ---- aliases ---------------------------------------------------------------------------
    def alias(self, name: str = "live") -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(aliases).where(aliases.c.name == name)).first()
        return None if r is None else {"name": r.name, "collection": r.collection, "snapshot_id": r.snapshot_id,
                                       "updated_at": _aware(r.updated_at).isoformat(), "pinned": bool(r.pinned)}

    def set_alias(self, name: str, collection: str, snapshot_id: str | None, action: str, reason: str | None = None,
                  pinned: bool = False) -> None:
        """Point an alias at a collection; `pinned` holds readers on exactly `snapshot_id`."""
        now = utcnow()
        with self.engine.begin() as c:
            c.execute(delete(aliases).where(aliases.c.name == name))
            c.execute(insert(aliases).values(name=name, collection=collection, snapshot_id=snapshot_id, updated_at=now, pinned=1 if pinned else None))
            c.execute(insert(alias_history).values(name=name, collection=collection, snapshot_id=snapshot_id, action=action, reason=reason, at=now))

    def alias_history(self, name: str = "live") -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(alias_history).where(alias_history.c.name == name).order_by(alias_history.c.id)).all()
        return [{"collection": r.collection, "snapshot_id": r.snapshot_id, "action": r.action, "reason": r.reason, "at": _aware(r.at).isoformat()} for r in rows]

    # ---- evaluation ------------------------------------------------------------------------
    def register_query_set(self, h: str, name: str, source: str, n_queries: int, n_judgements: int) -> None:
        with self.engine.begin() as c:
            if c.execute(select(query_sets.c.hash).where(query_sets.c.hash == h)).first() is None:
                c.execute(insert(query_sets).values(hash=h, name=name, source=source, queries=n_queries, judgements=n_judgements, registered_at=utcnow()))

    def save_eval(self, eval_id: str, snapshot_id: str, collection: str, qs_hash: str, retriever: str, recipe: dict[str, Any],
                  metrics: dict[str, Any], per_query: dict[str, dict[str, float]], rankings: dict[str, list[tuple[str, float]]]) -> None:
        with self.engine.begin() as c:
            c.execute(insert(eval_runs).values(
                eval_id=eval_id, created_at=utcnow(), snapshot_id=snapshot_id, collection=collection, query_set_hash=qs_hash,
                retriever=retriever, recipe_json=json.dumps(recipe, sort_keys=True, default=str), metrics_json=json.dumps(metrics, sort_keys=True),
            ))
            rows = [{"eval_id": eval_id, "qid": q, "metrics_json": json.dumps(per_query.get(q, {}), sort_keys=True),
                     "ranking_json": json.dumps(rankings.get(q, []))} for q in sorted(set(per_query) | set(rankings))]
            for part in _chunks_of(rows, 1000):
                c.execute(insert(eval_queries), list(part))

    def list_evals(self, retriever: str | None = None, query_set_hash: str | None = None) -> list[dict[str, Any]]:
        q = select(eval_runs).order_by(eval_runs.c.created_at)
        if retriever:
            q = q.where(eval_runs.c.retriever == retriever)
        if query_set_hash:
            q = q.where(eval_runs.c.query_set_hash == query_set_hash)
        with self.engine.connect() as c:
            return [_eval(r) for r in c.execute(q)]

    def get_eval(self, eval_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(eval_runs).where(eval_runs.c.eval_id.startswith(eval_id))).first()
        return None if r is None else _eval(r)

    def eval_queries(self, eval_id: str) -> tuple[dict[str, dict[str, float]], dict[str, list[tuple[str, float]]]]:
        with self.engine.connect() as c:
            rows = c.execute(select(eval_queries).where(eval_queries.c.eval_id == eval_id)).all()
        return ({r.qid: json.loads(r.metrics_json) for r in rows}, {r.qid: [tuple(x) for x in json.loads(r.ranking_json)] for r in rows})

    def pin_eval(self, eval_id: str, name: str = "baseline") -> None:
        with self.engine.begin() as c:
            r = c.execute(select(eval_runs.c.retriever, eval_runs.c.query_set_hash).where(eval_runs.c.eval_id == eval_id)).first()
            if r is None:
                raise LookupError(f"unknown eval run {eval_id!r}")
            c.execute(update(eval_runs).where(eval_runs.c.pinned == name, eval_runs.c.retriever == r.retriever,
                                              eval_runs.c.query_set_hash == r.query_set_hash).values(pinned=None))
            c.execute(update(eval_runs).where(eval_runs.c.eval_id == eval_id).values(pinned=name))

    def pinned_eval(self, retriever: str, query_set_hash: str, name: str = "baseline") -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(eval_runs).where(eval_runs.c.pinned == name, eval_runs.c.retriever == retriever,
                                                  eval_runs.c.query_set_hash == query_set_hash)).first()
        return None if r is None else _eval(r)

    def cursor(self, feed: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(cursors).where(cursors.c.feed == feed)).first()
        return None if r is None else {"feed": r.feed, "last_file": r.last_file, "last_hash": r.last_hash, "updated_at": _aware(r.updated_at)}

    def all_cursors(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as c:
            return {
                r.feed: {"last_file": r.last_file, "last_hash": r.last_hash, "updated_at": _aware(r.updated_at).isoformat()}
                for r in c.execute(select(cursors))
            }

    def applied_files(self, feed: str) -> dict[str, str]:
        with self.engine.connect() as c:
            q = select(applied_files.c.file_name, applied_files.c.file_hash).where(applied_files.c.feed == feed)
            return {n: h for n, h in c.execute(q)}

    def applied_file_records(self, feed: str) -> dict[str, AppliedFile]:
        """Every applied batch file of a feed with its hash, records and the stat its hash belongs to."""
        t = applied_files.c
        with self.engine.connect() as c:
            q = select(t.file_name, t.file_hash, t.records, t.file_size, t.file_mtime_ns).where(t.feed == feed)
            return {r[0]: AppliedFile(*r) for r in c.execute(q)}

    def remember_file_stats(self, feed: str, files: Sequence[AppliedFile]) -> None:
        """Record the size and mtime at which applied files still hash to their recorded hash (files
        applied before stats were kept, or touched since), so later scans need not read them again."""
        t = applied_files.c
        with self.engine.begin() as c:
            for f in files:
                c.execute(update(applied_files).where(t.feed == feed, t.file_name == f.name, t.file_hash == f.sha256)
                          .values(file_size=f.size, file_mtime_ns=f.mtime_ns))

    # ---- the batch commit -------------------------------------------------------------------
    def commit_batch(self, b: BatchCommit) -> None:
        """Apply one batch to the ledger atomically (the batch's commit point)."""
        now = utcnow()
        with self.engine.begin() as c:
            if b.applied_file is not None:
                name = b.applied_file[0]
                prior = c.execute(
                    select(applied_files.c.file_hash).where(applied_files.c.feed == b.feed, applied_files.c.file_name == name)
                ).first()
                if prior is not None:
                    raise RuntimeError(f"batch file {name!r} of feed {b.feed!r} was already applied")
            ids = [d.doc_id for d in b.docs]
            replaced: Counter[str] = Counter()
            for part in _chunks_of(ids):  # their LSH rows stay: lsh_candidates drops those they no longer have
                replaced.update(st for (st,) in c.execute(select(documents.c.status).where(documents.c.doc_id.in_(part))))
                c.execute(delete(documents).where(documents.c.doc_id.in_(part)))
            _add_doc_counts(c, Counter(d.status for d in b.docs), replaced)
            if b.docs:
                c.execute(
                    insert(documents),
                    [
                        {
                            "doc_id": d.doc_id,
                            "feed": d.feed,
                            "status": d.status,
                            "title": d.title,
                            "text": d.text,
                            "metadata_json": json.dumps(d.metadata, sort_keys=True, ensure_ascii=False),
                            "updated_at": _utc(d.updated_at),
                            "version_hash": d.version_hash,
                            "text_hash": d.text_hash,
                            "duplicate_of": d.duplicate_of,
                            "dup_kind": d.dup_kind,
                            "similarity": d.similarity,
                            "minhash": d.minhash,
                            "bands": pack_bands(d.buckets) if d.status == "active" else None,
                            "version": d.version,
                            "changed_at": now,
                            "run_id": b.run_id,
                        }
                        for d in b.docs
                    ],
                )
                band_rows = [{"band": k, "doc_id": d.doc_id} for d in b.docs if d.status == "active" for k in d.buckets]
                if band_rows:
                    c.execute(_insert_ignoring_existing(c, lsh_recent), band_rows)
                    _after_lsh_insert(c, len(band_rows))
            if b.docs:
                self._write_history(c, b.docs)
            for did, ts in b.touched_updated_at.items():
                c.execute(update(documents).where(documents.c.doc_id == did).values(updated_at=_utc(ts)))
            for part in _chunks_of(b.chunk_deletes):
                c.execute(delete(chunks).where(chunks.c.collection == b.collection, chunks.c.chunk_id.in_(part)))
            for cid, ch in b.chunk_hash_updates:
                c.execute(update(chunks).where(chunks.c.collection == b.collection, chunks.c.chunk_id == cid).values(chunk_hash=ch))
            if b.chunk_inserts:
                c.execute(
                    insert(chunks),
                    [
                        {
                            "collection": b.collection,
                            "chunk_id": r.chunk_id,
                            "doc_id": r.doc_id,
                            "position": r.position,
                            "chunk_hash": r.chunk_hash,
                            "embed_hash": r.embed_hash,
                            "point_id": r.point_id,
                            "n_chars": r.n_chars,
                        }
                        for r in b.chunk_inserts
                    ],
                )
            if b.acc_delta or b.chunk_count_delta:
                st = c.execute(select(index_state).where(index_state.c.collection == b.collection)).first()
                acc = (int(st.acc, 16) + b.acc_delta) % _MOD
                c.execute(
                    update(index_state)
                    .where(index_state.c.collection == b.collection)
                    .values(acc=f"{acc:064x}", chunks=st.chunks + b.chunk_count_delta)
                )
            if b.quarantined:
                c.execute(insert(quarantine), _quarantine_rows(b.quarantined, b.run_id, now))
            if b.applied_file is not None:
                af = AppliedFile(*b.applied_file)
                c.execute(
                    insert(applied_files).values(
                        feed=b.feed, file_name=af.name, file_hash=af.sha256, records=af.records, applied_at=now, run_id=b.run_id,
                        file_size=af.size, file_mtime_ns=af.mtime_ns,
                    )
                )
                c.execute(delete(cursors).where(cursors.c.feed == b.feed))
                c.execute(insert(cursors).values(feed=b.feed, last_file=af.name, last_hash=af.sha256, updated_at=now))

    def _write_history(self, c: Connection, docs: Sequence[DocWrite]) -> None:
        row = c.execute(select(counters.c.value).where(counters.c.name == "ledger_version")).first()
        v = (row.value if row else 0) + 1
        if row is None:
            c.execute(insert(counters).values(name="ledger_version", value=v))
        else:
            c.execute(update(counters).where(counters.c.name == "ledger_version").values(value=v))
        ids = [d.doc_id for d in docs]
        open_rows: dict[str, str] = {}
        for part in _chunks_of(ids):
            q = select(doc_history.c.doc_id, doc_history.c.version_hash).where(doc_history.c.doc_id.in_(part), doc_history.c.valid_to.is_(None))
            open_rows.update({d: h for d, h in c.execute(q)})
        close = [d.doc_id for d in docs if d.doc_id in open_rows and (d.status != "active" or d.version_hash != open_rows[d.doc_id])]
        for part in _chunks_of(close):
            c.execute(update(doc_history).where(doc_history.c.doc_id.in_(part), doc_history.c.valid_to.is_(None)).values(valid_to=v))
        new = [
            {"doc_id": d.doc_id, "version_hash": d.version_hash, "valid_from": v, "valid_to": None}
            for d in docs
            if d.status == "active" and open_rows.get(d.doc_id) != d.version_hash
        ]
        if new:
            c.execute(insert(doc_history), new)

    def ledger_version(self) -> int:
        with self.engine.connect() as c:
            row = c.execute(select(counters.c.value).where(counters.c.name == "ledger_version")).first()
        return row.value if row else 0

    def record_quarantine(self, items: Sequence[Quarantined], run_id: str) -> None:
        if not items:
            return
        now = utcnow()
        with self.engine.begin() as c:
            c.execute(insert(quarantine), _quarantine_rows(items, run_id, now))

    def list_quarantine(self, feed: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        q = select(quarantine).order_by(quarantine.c.id)
        if feed:
            q = q.where(quarantine.c.feed == feed)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as c:
            return [
                {"id": r.id, "run_id": r.run_id, "feed": r.feed, "file": r.file, "line": r.line, "record_id": r.record_id,
                 "reason": r.reason, "excerpt": r.excerpt, "created_at": _aware(r.created_at).isoformat()}
                for r in c.execute(q)
            ]

    def list_duplicates(self) -> list[dict[str, Any]]:
        q = select(documents.c.doc_id, documents.c.duplicate_of, documents.c.dup_kind, documents.c.similarity).where(
            documents.c.status == "duplicate"
        )
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q.order_by(documents.c.doc_id))]

    # ---- snapshots and runs -----------------------------------------------------------------
    def record_snapshot(self, collection: str, snapshot_id: str, run_id: str | None, manifest: dict[str, Any]) -> bool:
        """Store a snapshot unless it is the latest already; returns True when a new one was written."""
        with self.engine.begin() as c:
            latest = c.execute(
                select(snapshots.c.snapshot_id).where(snapshots.c.collection == collection).order_by(snapshots.c.seq.desc()).limit(1)
            ).first()
            c.execute(update(index_state).where(index_state.c.collection == collection).values(snapshot_id=snapshot_id))
            if latest is not None and latest.snapshot_id == snapshot_id:
                return False
            c.execute(
                insert(snapshots).values(
                    snapshot_id=snapshot_id, collection=collection, parent=manifest.get("parent"), created_at=utcnow(),
                    run_id=run_id, documents=manifest["documents"], chunks=manifest["chunks"],
                    manifest_json=json.dumps(manifest, sort_keys=True),
                )
            )
            return True

    def latest_snapshot(self, collection: str | None = None) -> dict[str, Any] | None:
        q = select(snapshots).order_by(snapshots.c.seq.desc()).limit(1)
        if collection:
            q = q.where(snapshots.c.collection == collection)
        with self.engine.connect() as c:
            r = c.execute(q).first()
        return None if r is None else _snap(r)

    def get_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            rows = c.execute(select(snapshots).where(snapshots.c.snapshot_id.startswith(snapshot_id)).order_by(snapshots.c.seq.desc())).all()
        ids = {r.snapshot_id for r in rows}
        if len(ids) > 1:
            raise ValueError(f"snapshot prefix {snapshot_id!r} is ambiguous: {sorted(ids)}")
        return _snap(rows[0]) if rows else None

    def list_snapshots(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [_snap(r) for r in c.execute(select(snapshots).order_by(snapshots.c.seq))]

    def doc_versions_at(self, ledger_version: int) -> dict[str, str]:
        """doc_id -> version_hash of the documents active at a ledger version (a snapshot's content)."""
        q = select(doc_history.c.doc_id, doc_history.c.version_hash).where(
            doc_history.c.valid_from <= ledger_version,
            (doc_history.c.valid_to.is_(None)) | (doc_history.c.valid_to > ledger_version),
        )
        with self.engine.connect() as c:
            return {d: v for d, v in c.execute(q)}

    def start_run(self, run_id: str, feed: str, source: str) -> None:
        """Record a run. Called under the index lock, so an earlier run of the same feed and source
        still marked running cannot be alive (it would hold the lock): it is marked crashed."""
        with self.engine.begin() as c:
            c.execute(
                update(runs).where(runs.c.status == "running", runs.c.feed == feed, runs.c.source == source).values(
                    status="crashed", finished_at=utcnow(), error=f"the run ended without finishing (process killed?); found by run {run_id}"
                )
            )
            c.execute(insert(runs).values(run_id=run_id, feed=feed, source=source, status="running", started_at=utcnow()))

    def finish_run(self, run_id: str, status: str, counts: dict[str, Any] | None = None, error: str | None = None, snapshot_id: str | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(
                update(runs).where(runs.c.run_id == run_id).values(
                    status=status, finished_at=utcnow(), counts_json=json.dumps(counts or {}), error=error, snapshot_id=snapshot_id
                )
            )

    def list_runs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [
                {"run_id": r.run_id, "feed": r.feed, "status": r.status, "started_at": _aware(r.started_at).isoformat(),
                 "finished_at": _aware(r.finished_at).isoformat() if r.finished_at else None,
                 "counts": json.loads(r.counts_json or "{}"), "error": r.error, "snapshot_id": r.snapshot_id}
                for r in c.execute(select(runs).order_by(runs.c.started_at))
            ]

    # ---- the index lock ---------------------------------------------------------------------
    def acquire_lock(self, name: str, wait_s: float = 0.0, stale_after_s: float = 6 * 3600) -> str:
        """Take the per-index lock so two ingests never interleave writes.

        Raises:
            LedgerBusy: another live owner holds it after `wait_s` seconds.
        """
        owner = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with self.engine.begin() as c:
                    row = c.execute(select(locks).where(locks.c.name == name)).first()
                    if row is not None and _lock_is_stale(row.owner, _aware(row.acquired_at), stale_after_s):
                        c.execute(delete(locks).where(locks.c.name == name, locks.c.owner == row.owner))
                    c.execute(insert(locks).values(name=name, owner=owner, acquired_at=utcnow()))
                return owner
            except IntegrityError:
                if time.monotonic() >= deadline:
                    with self.engine.connect() as c:
                        row = c.execute(select(locks).where(locks.c.name == name)).first()
                    holder = row.owner if row else "?"
                    raise LedgerBusy(f"index {name!r} is being ingested by {holder}; try again when it finishes") from None
                time.sleep(0.5)

    def release_lock(self, name: str, owner: str) -> None:
        with self.engine.begin() as c:
            c.execute(delete(locks).where(locks.c.name == name, locks.c.owner == owner))



def _current_bands(c: Connection, doc_ids: Iterable[str]) -> dict[str, frozenset[int] | None]:
    """Active documents among `doc_ids` -> their band keys now (None: written before `bands`,
    when their LSH rows were still exact)."""
    out: dict[str, frozenset[int] | None] = {}
    for part in _chunks_of(sorted(set(doc_ids))):
        q = select(documents.c.doc_id, documents.c.bands).where(documents.c.doc_id.in_(part), documents.c.status == "active")
        out.update((d, None if bands is None else frozenset(unpack_bands(bands))) for d, bands in c.execute(q))
    return out



def _add_doc_counts(c: Connection, added: Counter[str], removed: Counter[str]) -> None:
    for status in sorted(set(added) | set(removed)):
        d = added[status] - removed[status]
        if d and c.execute(update(doc_counts).where(doc_counts.c.status == status).values(n=doc_counts.c.n + d)).rowcount == 0:
            c.execute(insert(doc_counts).values(status=status, n=d))



def _lock_is_stale(owner: str, acquired_at: datetime | None, stale_after_s: float) -> bool:
    """A lock whose process on this host is gone (e.g. SIGKILL) is stale at once."""
    host, _, rest = owner.partition(":")
    pid, _, ns = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return _same_live_process(int(pid), int(ns) / 1e9 if ns.isdigit() else None) is False
    return acquired_at is not None and (utcnow() - acquired_at).total_seconds() > stale_after_s


def _same_live_process(pid: int, acquired_s: float | None) -> bool | None:
    """Whether `pid` is still the running process that took the lock (Linux /proc; None: unknown).

    A killed holder whose parent has not reaped it yet is a zombie that `kill(pid, 0)` still
    finds, and a recycled pid belongs to a process started after the lock was taken: in both
    cases the holder is dead.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            return False
        if acquired_s is None:
            return True
        btime = next(int(l.split()[1]) for l in Path("/proc/stat").read_text().splitlines() if l.startswith("btime "))
        started = btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return started <= acquired_s + 2.0  # btime has one-second resolution
    except (OSError, ValueError, IndexError, StopIteration):
        return None



def _doc_row(r: Any) -> DocRow:
    return DocRow(
        doc_id=r.doc_id, feed=r.feed, status=r.status, title=r.title or "", text=r.text,
        metadata=json.loads(r.metadata_json or "{}"), updated_at=_aware(r.updated_at), version_hash=r.version_hash,
        text_hash=r.text_hash, duplicate_of=r.duplicate_of, dup_kind=r.dup_kind, minhash=r.minhash, version=r.version,
    )


def _chunk_row(r: Any) -> ChunkRow:
    return ChunkRow(r.chunk_id, r.doc_id, r.position, r.chunk_hash, r.embed_hash, r.point_id, r.n_chars)


def _eval(r: Any) -> dict[str, Any]:
    return {"eval_id": r.eval_id, "created_at": _aware(r.created_at).isoformat(), "snapshot_id": r.snapshot_id, "collection": r.collection,
            "query_set_hash": r.query_set_hash, "retriever": r.retriever, "recipe": json.loads(r.recipe_json),
            "metrics": json.loads(r.metrics_json), "pinned": r.pinned}


def _snap(r: Any) -> dict[str, Any]:
    m = json.loads(r.manifest_json)
    m.setdefault("snapshot_id", r.snapshot_id)
    m["created_at"] = _aware(r.created_at).isoformat()
    m["run_id"] = r.run_id
    return m
