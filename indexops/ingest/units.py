"""A source as units of work: one batch file of a delta feed, or a slice of a full snapshot.
Each unit lands together or not at all; `plan_source` describes them lazily (a file is read when
its unit is reached)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from indexops.index.context import IndexContext
from indexops.ingest.readers import FeedFileError
from indexops.ingest.sources import SourceKind, batch_files, feed_name, iter_snapshot_records, read_pending, scan_delta_feed
from indexops.ingest.storage import SourceCredentials, is_remote, is_sql_url, local_path
from indexops.ingest.validate import ValidationResult
from indexops.ledger import AppliedFile, KeyChanges, Ledger
from indexops.models import Quarantined, SourceRecord
from indexops.settings import Settings, load_settings, mask_url_password


@dataclass
class WorkUnit:
    """One atomic unit: its records land together or not at all."""

    label: str
    records: list[SourceRecord] = field(default_factory=list)
    read_errors: list[Quarantined] = field(default_factory=list)
    applied_file: AppliedFile | None = None
    snapshot_deletes: list[str] = field(default_factory=list)
    snapshot_seen: set[str] | None = None  # the last unit of a full snapshot: every id the source holds
    screened: ValidationResult | None = None
    keys: KeyChanges | None = None  # a keyed source's fingerprints and position, committed with the unit
    unreadable: list[Quarantined] = field(default_factory=list)  # keys that could not be parsed: quarantined, never a reason to reject the unit


@dataclass
class SourcePlan:
    feed: str
    kind: SourceKind
    units: Iterator[WorkUnit]
    changed_after_apply: list[str] = field(default_factory=list)
    late_files: list[str] = field(default_factory=list)
    pending_files: int = 0
    keyed: Any = None  # a keyed source's KeyedCounts (listed, fetched, unchanged, deleted), final once the units are consumed


@runtime_checkable
class Source(Protocol):
    """The driver's contract with a place changes arrive from: its name in the ledger, its kind, and
    the units still to apply (`plan`, lazy: a unit's records are read when it is reached)."""

    feed: str
    kind: SourceKind

    def plan(self, ctx: IndexContext) -> SourcePlan: ...


@dataclass
class DeltaFeed:
    """Batch files applied in name order, each once: the ledger's applied files say what is pending."""

    path: Path
    feed: str
    kind: SourceKind = "delta"

    def plan(self, ctx: IndexContext) -> SourcePlan:
        name = self.feed
        st = scan_delta_feed(self.path, ctx.ledger, name)

        def delta_units() -> Iterator[WorkUnit]:
            for pf in st.pending:
                try:
                    recs, bad, applied = read_pending(pf, name)
                except FeedFileError as e:
                    yield WorkUnit(label=pf.name, read_errors=[Quarantined(feed=name, file=pf.name, line=0, reason=str(e))])
                    continue
                yield WorkUnit(label=pf.name, records=recs, read_errors=bad, applied_file=applied)

        return SourcePlan(name, self.kind, delta_units(), st.changed_after_apply, [p.name for p in st.pending if p.late], len(st.pending))


@dataclass
class FullSnapshot:
    """A directory (or BEIR corpus) holding the whole current state, cut into units of
    `ingest.batch_docs` records; ids it no longer holds are deleted with its last unit."""

    path: Path
    feed: str
    kind: SourceKind = "snapshot"

    def plan(self, ctx: IndexContext) -> SourcePlan:
        name, path, kind = self.feed, self.path, self.kind
        batch = ctx.settings.ingest.batch_docs

        def snapshot_units() -> Iterator[WorkUnit]:
            seen: set[str] = set()
            unit = WorkUnit(label="part-000001")
            n = 1
            for rec, bad in iter_snapshot_records(path, name, kind):
                if bad is not None:
                    unit.read_errors.append(bad)
                    if bad.record_id:
                        seen.add(bad.record_id)
                    continue
                assert rec is not None
                rid = rec.raw.get("id")
                if isinstance(rid, (str, int)) and not isinstance(rid, bool):
                    seen.add(str(rid).strip())
                unit.records.append(rec)
                if len(unit.records) >= batch:
                    yield unit
                    n += 1
                    unit = WorkUnit(label=f"part-{n:06d}")
            unit.snapshot_seen = seen  # what it deletes is read from the ledger when the unit is applied
            yield unit

        return SourcePlan(name, kind, snapshot_units())


def open_source(path: str | Path, kind: SourceKind, feed: str | None = None, settings: Settings | None = None,
                credentials: SourceCredentials | None = None) -> Source:
    """The source a path (or URL) and kind name (`feed` defaults to the folder name, a table's name).
    `credentials` read by the caller go to the filesystem (over the config's options) or the database.

    Raises:
        ValueError: the kind cannot read that location (a snapshot in object storage, a table at a path).
    """
    # the other kinds build on this module's units, so they are imported here, not at the top
    from indexops.ingest.document_tree import DocumentTree
    from indexops.ingest.remote_feed import RemoteDeltaFeed

    name = feed or feed_name(path)
    s = settings or load_settings()
    creds = credentials or SourceCredentials()
    if kind == "sql" or is_sql_url(path):
        if kind != "sql" or not is_sql_url(path):
            raise ValueError(f"source kind {kind!r} cannot read {mask_url_password(str(path))!r}: a database URL is --source sql")
        from indexops.ingest.sql_table import SqlTable  # SQLAlchemy reflection only where a table is read

        return SqlTable(str(path), feed or s.sql.table or "sql", s.sql, password=creds.password)
    if kind == "documents":
        return DocumentTree(str(path), name, dict(creds.storage_options))
    if is_remote(path):
        if kind != "delta":
            raise ValueError(f"source kind {kind!r} reads local folders only; from {path} use delta or documents")
        return RemoteDeltaFeed(str(path), name, dict(creds.storage_options))
    return DeltaFeed(local_path(path), name) if kind == "delta" else FullSnapshot(local_path(path), name, kind)


def plan_source(ctx: IndexContext, path: str | Path, kind: SourceKind, feed: str | None = None,
                credentials: SourceCredentials | None = None) -> SourcePlan:
    """Describe what a run will apply, lazily (files are read when their unit is reached)."""
    s = ctx.settings
    block = s.source.credentials_block if is_remote(path) else s.sql.password_block if is_sql_url(path) else None
    if credentials is None and block:
        logging.getLogger(__name__).warning(
            "the config names Prefect block %s, which the flows read (indexops ingest, the deployments); "
            "this direct call uses the environment's credentials", block)
    return open_source(path, kind, feed, s, credentials).plan(ctx)


@dataclass(frozen=True)
class PendingWork:
    """What a delta feed has waiting: batch files and their bytes."""

    files: int
    bytes: int


def pending_work(workspace: str | Path, ledger_url: str | None, path: str | Path, kind: SourceKind,
                 feed: str | None = None) -> PendingWork | None:
    """A delta feed's waiting batch files, read from the ledger alone (no index opened, no model
    loaded): lets a caller skip queueing for a run with nothing to do.
    None for snapshot and BEIR sources, which are compared record by record, and for a missing feed."""
    if kind != "delta" or is_remote(path) or is_sql_url(path):
        return None
    root = local_path(path)
    if not root.is_dir():
        return None
    led = Ledger.for_workspace(workspace, ledger_url)
    try:
        applied = led.applied_files(feed or feed_name(path))
    finally:
        led.close()
    # pending as scan_delta_feed defines it (a batch file whose name was never applied), without
    # hashing every file: the run's own scan hashes them to spot files changed after apply
    files, size = 0, 0
    for p in batch_files(root):
        if p.name not in applied:
            try:
                size += p.stat().st_size
                files += 1
            except OSError:
                pass  # removed while we listed it: not pending
    return PendingWork(files, size)
