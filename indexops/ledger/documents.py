"""Documents as the ledger knows them: current rows, duplicates, per-status counts and the
version history that says what a snapshot held."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from indexops.ledger.rows import DocRow, _aware, _chunks_of, _doc_row
from indexops.ledger.schema import counters, doc_counts, doc_history, documents


class DocumentRepository:
    """Reads of the `documents`, `doc_counts` and `doc_history` tables."""

    engine: Engine

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

    def doc_versions_at(self, ledger_version: int) -> dict[str, str]:
        """doc_id -> version_hash of the documents active at a ledger version (a snapshot's content)."""
        q = select(doc_history.c.doc_id, doc_history.c.version_hash).where(
            doc_history.c.valid_from <= ledger_version,
            (doc_history.c.valid_to.is_(None)) | (doc_history.c.valid_to > ledger_version),
        )
        with self.engine.connect() as c:
            return {d: v for d, v in c.execute(q)}

    def ledger_version(self) -> int:
        with self.engine.connect() as c:
            row = c.execute(select(counters.c.value).where(counters.c.name == "ledger_version")).first()
        return row.value if row else 0

    def list_duplicates(self) -> list[dict[str, Any]]:
        q = select(documents.c.doc_id, documents.c.duplicate_of, documents.c.dup_kind, documents.c.similarity).where(
            documents.c.status == "duplicate"
        )
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q.order_by(documents.c.doc_id))]

    # ---- for the drift report ------------------------------------------------------------------
    def duplicates_per_run(self) -> dict[str, int]:
        """Documents now held as duplicates, per the run that wrote them ('' for none)."""
        q = select(documents.c.run_id, func.count()).where(documents.c.status == "duplicate").group_by(documents.c.run_id)
        with self.engine.connect() as c:
            out: dict[str, int] = {}
            for run_id, n in c.execute(q):
                out[run_id or ""] = out.get(run_id or "", 0) + int(n)
            return out

    def current_version_hashes(self) -> dict[str, str | None]:
        """doc_id -> version_hash of every document's current row, whatever its status (to tell
        whether a snapshot's version of a document is still the one the ledger holds)."""
        with self.engine.connect() as c:
            return {d: v for d, v in c.execute(select(documents.c.doc_id, documents.c.version_hash))}

    def active_document_dates(self) -> list[datetime]:
        """When each active document last changed, in UTC: its source's `updated_at`, else when the
        ledger wrote it (documents ordered by id)."""
        q = select(documents.c.updated_at, documents.c.changed_at).where(documents.c.status == "active").order_by(documents.c.doc_id)
        with self.engine.connect() as c:
            return [t for u, ch in c.execute(q) if (t := _aware(u or ch)) is not None]
