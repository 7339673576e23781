"""Records refused at validation, kept with the reason and an excerpt for review."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from indexops.ledger.rows import _aware
from indexops.ledger.schema import quarantine, utcnow
from indexops.models import Quarantined


class QuarantineRepository:
    """The `quarantine` table."""

    engine: Engine

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
