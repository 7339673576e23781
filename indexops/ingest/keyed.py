"""Keyed sources: places that say what they hold now (a document tree, a bucket, a table) rather
than send changes. A source lists keys with a cheap version fingerprint and fetches a key's record
on demand; the engine compares the listing with the fingerprints the ledger keeps, fetches only the
keys that changed, and deletes the keys that vanished. Fingerprints commit in the same ledger
transaction as the records they belong to, so a crash re-fetches exactly what was not committed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from indexops.index.context import IndexContext
from indexops.ingest.units import SourcePlan, WorkUnit
from indexops.ledger import DocRow, KeyChanges
from indexops.models import Quarantined, SourceRecord


@dataclass(frozen=True)
class Listed:
    """One key a source holds now. `fingerprint` None: the source only says the key exists (a
    table's key reconciliation); it is fetched when the ledger does not know the key."""

    key: str
    fingerprint: str | None
    size: int | None = None


@dataclass
class Listing:
    """What a source listed. `complete`: every key it holds, so a known key missing is deleted;
    else only the keys that may have changed (a table's rows after its watermark)."""

    entries: list[Listed]
    complete: bool = True
    state: dict[str, Any] | None = None  # the source's position once every entry is applied


@dataclass
class Fetched:
    """A key's record as fetched (or why it could not be), with the fingerprint of what was read."""

    key: str
    fingerprint: str
    record: SourceRecord | None = None
    error: Quarantined | None = None
    position: Any = None  # the source's position once this key is applied (a row's watermark, JSON)


@runtime_checkable
class KeyedSource(Protocol):
    """A source that lists keys with fingerprints and fetches records by key."""

    feed: str
    kind: str

    def list_keys(self, ctx: IndexContext) -> Listing: ...

    def fetch(self, ctx: IndexContext, keys: Sequence[Listed]) -> Iterator[Fetched]:
        """The keys' records, in the order given (a source whose listing is ordered by its position
        relies on it: the position stored after a unit is its last key's)."""
        ...


class ListsKeys:
    """Makes a keyed source a `Source`: its plan is `plan_keyed` over its own listing and fetch."""

    def plan(self, ctx: IndexContext) -> SourcePlan:
        return plan_keyed(ctx, self)  # type: ignore[arg-type]


class TooManyDeletes(RuntimeError):
    """A complete listing dropped more of the known keys than `source.max_delete_fraction` allows:
    an emptied bucket or a wrong prefix must not empty the index."""


@dataclass
class KeyedCounts:
    """What a keyed run saw: the ingest artifact's listed / fetched / unchanged / deleted."""

    listed: int = 0
    fetched: int = 0
    unchanged: int = 0
    deleted: int = 0
    unreadable: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class KeyedPlan:
    """The keys a run must fetch and delete, decided from one listing."""

    listing: Listing
    changed: list[Listed] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    counts: KeyedCounts = field(default_factory=KeyedCounts)


def diff_listing(listing: Listing, known: dict[str, str], max_delete_fraction: float, feed: str) -> KeyedPlan:
    """Compare a listing with the fingerprints the ledger keeps.

    Raises:
        TooManyDeletes: a complete listing would delete more than `max_delete_fraction` of the known keys.
    """
    kp = KeyedPlan(listing)
    listed: set[str] = set()
    for e in listing.entries:
        if e.key in listed:
            continue
        listed.add(e.key)
        have = known.get(e.key)
        if have is not None and (e.fingerprint is None or e.fingerprint == have):
            kp.counts.unchanged += 1
        else:
            kp.changed.append(e)
    kp.counts.listed = len(listed)
    if listing.complete:
        kp.deleted = sorted(k for k in known if k not in listed)
        if known and len(kp.deleted) > max_delete_fraction * len(known):
            raise TooManyDeletes(
                f"source {feed!r} lists {len(listed)} keys; {len(kp.deleted)} of the {len(known)} indexed keys "
                f"({len(kp.deleted) / len(known):.0%}) would be deleted, more than source.max_delete_fraction="
                f"{max_delete_fraction}. Nothing was changed. If the source really shrank, re-run with a higher "
                f"source.max_delete_fraction (INDEXOPS_SOURCE__MAX_DELETE_FRACTION).")
    kp.counts.deleted = len(kp.deleted)
    return kp


def owned_by(ctx: IndexContext, feed: str, ids: Sequence[str]) -> list[str]:
    """The ids that are documents of `feed` in the ledger (a keyed source deletes only its own)."""
    return sorted(d for d, row in ctx.ledger.get_documents(ids).items() if _owns(row, feed))


def _owns(row: DocRow | None, feed: str) -> bool:
    return row is not None and row.feed == feed and row.status != "deleted"


def plan_keyed(ctx: IndexContext, source: KeyedSource) -> SourcePlan:
    """A keyed source as units: its changed keys fetched `ingest.batch_docs` at a time (each unit
    commits its keys' fingerprints with its records), then one unit deleting the vanished keys.
    The listing happens here; fetching happens as each unit is reached."""
    listing = source.list_keys(ctx)
    known = ctx.ledger.source_fingerprints(source.feed)
    kp = diff_listing(listing, known, ctx.settings.source.max_delete_fraction, source.feed)
    batch = ctx.settings.ingest.batch_docs
    state = ctx.ledger.source_position(source.feed)

    def units() -> Iterator[WorkUnit]:
        todo = kp.changed
        for n, i in enumerate(range(0, len(todo), batch), start=1):
            unit = WorkUnit(label=f"keys-{n:06d}", keys=KeyChanges())
            fetched = list(source.fetch(ctx, todo[i : i + batch]))
            docs = ctx.ledger.get_documents(f.key for f in fetched)
            for f in fetched:
                kp.counts.fetched += 1
                unit.keys.versions[f.key] = f.fingerprint
                if f.position is not None:
                    state["position"] = f.position
                other = docs.get(f.key)
                if f.record is not None and other is not None and not _owns(other, source.feed) and other.status != "deleted":
                    f = Fetched(f.key, f.fingerprint, error=Quarantined(
                        feed=source.feed, file=f.record.file, line=f.record.line, record_id=f.key,
                        reason=f"id {f.key!r} is already a document of feed {other.feed!r}; it is left to that feed "
                               "(keyed ids are paths or key values: give one source its own root or table)"))
                if f.record is not None:
                    unit.records.append(f.record)
                elif f.error is not None:
                    kp.counts.unreadable += 1
                    unit.unreadable.append(f.error)
            # a key that turned unreadable leaves the index, as a load of the source as it is now would
            unit.snapshot_deletes = sorted({q.record_id for q in unit.unreadable if q.record_id and _owns(docs.get(q.record_id), source.feed)})
            last = i + batch >= len(todo) and not kp.deleted
            unit.keys.state = {**state, **(listing.state or {})} if last else dict(state)
            yield unit
        if kp.deleted or (not todo and listing.state is not None and {**state, **listing.state} != state):
            yield WorkUnit(label="deletes" if kp.deleted else "position", snapshot_deletes=owned_by(ctx, source.feed, kp.deleted),
                           keys=KeyChanges(deletes=list(kp.deleted), state={**state, **(listing.state or {})}))

    plan = SourcePlan(source.feed, source.kind, units())  # type: ignore[arg-type]
    plan.keyed = kp.counts
    return plan
