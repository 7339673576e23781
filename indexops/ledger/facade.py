"""The ledger: what the index should hold, per document and chunk, plus cursors, quarantine,
duplicates, snapshots, evals and runs. SQLAlchemy Core, so a SQLite file and a Postgres URL behave alike.

The ledger is the commit point of every batch: vector-store writes happen first and are
idempotent (deterministic point ids), then one ledger transaction records the batch.

`Ledger` is one facade over focused repositories, one per concern and module, that share its
engine: callers keep one object (`ledger.method(...)`), and each concern's SQL lives in one place.
No method name appears in two repositories (`tests/unit/test_ledger_facade.py`), so the order of
the bases decides nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from indexops.ledger.batch_commit import BatchCommitRepository
from indexops.ledger.chunks import ChunkRepository
from indexops.ledger.collection_state import CollectionStateRepository
from indexops.ledger.documents import DocumentRepository
from indexops.ledger.evals import EvalRepository
from indexops.ledger.feeds import FeedRepository
from indexops.ledger.index_lock import IndexLockRepository
from indexops.ledger.lsh import LshRepository
from indexops.ledger.quarantine import QuarantineRepository
from indexops.ledger.runs import RunRepository
from indexops.ledger.schema import _create_schema, _sqlite_pragmas
from indexops.ledger.snapshots import SnapshotRepository
from indexops.ledger.source_keys import SourceKeyRepository

class Ledger(
    DocumentRepository, LshRepository, ChunkRepository, CollectionStateRepository, FeedRepository, QuarantineRepository,
    BatchCommitRepository, SnapshotRepository, EvalRepository, RunRepository, IndexLockRepository, SourceKeyRepository,
):
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
