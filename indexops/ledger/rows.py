"""The ledger's plain records (documents, chunks, a batch's writes, applied files) and the
conversions at the SQL boundary: what every repository hands in and out instead of table rows."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from indexops.models import Quarantined


_IN_CHUNK = 500
_MOD = 1 << 256


def _utc(dt: datetime | None) -> datetime | None:
    """Store instants in UTC: SQLite drops offsets, so a +02:00 time would shift by two hours."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


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
    keys: KeyChanges | None = None  # a keyed source's keys, fingerprints and position


@dataclass
class KeyChanges:
    """A keyed source's part of a batch: keys applied at their fingerprints, keys deleted, and the
    source's position after the batch (committed with the batch's records, never apart)."""

    versions: dict[str, str] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    state: dict[str, Any] | None = None


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


def _doc_row(r: Any) -> DocRow:
    return DocRow(
        doc_id=r.doc_id, feed=r.feed, status=r.status, title=r.title or "", text=r.text,
        metadata=json.loads(r.metadata_json or "{}"), updated_at=_aware(r.updated_at), version_hash=r.version_hash,
        text_hash=r.text_hash, duplicate_of=r.duplicate_of, dup_kind=r.dup_kind, minhash=r.minhash, version=r.version,
    )


def _chunk_row(r: Any) -> ChunkRow:
    return ChunkRow(r.chunk_id, r.doc_id, r.position, r.chunk_hash, r.embed_hash, r.point_id, r.n_chars)
