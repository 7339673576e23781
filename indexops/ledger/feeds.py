"""Where each feed stands: its cursor and the batch files applied, with the stat their hash belongs to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from indexops.ledger.rows import AppliedFile, _aware
from indexops.ledger.schema import applied_files, cursors


class FeedRepository:
    """The `cursors` and `applied_files` tables (written by the batch commit)."""

    engine: Engine

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
