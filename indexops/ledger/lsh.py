"""The near-duplicate index's LSH bands: candidate lookups per batch, and folding and pruning in
maintenance."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BigInteger, delete, func, literal, select, tuple_
from sqlalchemy.engine import Connection, Engine

from indexops.ledger.rows import _chunks_of
from indexops.ledger.schema import _counter, _fold_lsh, _set_counter, documents, lsh_bands, lsh_recent, unpack_bands


class LshRepository:
    """The `lsh_bands` / `lsh_recent` tiers, read through documents' current bands."""

    engine: Engine

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


def _current_bands(c: Connection, doc_ids: Iterable[str]) -> dict[str, frozenset[int] | None]:
    """Active documents among `doc_ids` -> their band keys now (None: written before `bands`,
    when their LSH rows were still exact)."""
    out: dict[str, frozenset[int] | None] = {}
    for part in _chunks_of(sorted(set(doc_ids))):
        q = select(documents.c.doc_id, documents.c.bands).where(documents.c.doc_id.in_(part), documents.c.status == "active")
        out.update((d, None if bands is None else frozenset(unpack_bands(bands))) for d, bands in c.execute(q))
    return out
