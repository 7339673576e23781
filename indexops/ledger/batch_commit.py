"""The commit point of every batch: documents, chunks, LSH bands, history, counts, cursor, applied
file, quarantine and the snapshot accumulator in one transaction (store writes happen before)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from indexops.ledger.quarantine import _quarantine_rows
from indexops.ledger.rows import _MOD, AppliedFile, BatchCommit, DocWrite, _chunks_of, _utc
from indexops.ledger.schema import (
    _after_lsh_insert, _insert_ignoring_existing, applied_files, chunks, counters, cursors, doc_counts,
    doc_history, documents, index_state, lsh_recent, pack_bands, quarantine, utcnow,
)
from indexops.ledger.source_keys import write_source_keys


class BatchCommitRepository:
    """Applies a `BatchCommit` atomically."""

    engine: Engine

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
            if b.keys is not None:
                write_source_keys(c, b.feed, b.keys.versions, b.keys.deletes, b.keys.state)

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


def _add_doc_counts(c: Connection, added: Counter[str], removed: Counter[str]) -> None:
    for status in sorted(set(added) | set(removed)):
        d = added[status] - removed[status]
        if d and c.execute(update(doc_counts).where(doc_counts.c.status == status).values(n=doc_counts.c.n + d)).rowcount == 0:
            c.execute(insert(doc_counts).values(status=status, n=d))
