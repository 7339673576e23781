"""Ingest runs: started, finished (with counts or the error), or found crashed."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from indexops.ledger.rows import _aware
from indexops.ledger.schema import runs, utcnow


class RunRepository:
    """The `runs` table."""

    engine: Engine

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
