"""Read-ahead, in one place: while a batch encodes, the next unit is read, validated and chunked
and its changed texts are queued behind this batch's on the encoder workers
(`PooledEmbedder.prefetch`, the one interface it uses). Speculative: it decides nothing; a unit's
own turn plans it again and finds its chunks made and its vectors encoded or on the way."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from indexops.ids import version_hash
from indexops.index.context import IndexContext
from indexops.ingest.plan import last_record_wins
from indexops.ingest.stages import embed_hash, encoder_inputs
from indexops.ingest.units import WorkUnit
from indexops.ingest.validate import ValidationResult, validate_records
from indexops.models import FeedRecord


def screen_unit(ctx: IndexContext, unit: WorkUnit, feed: str) -> ValidationResult:
    """Validate a unit's records (once; kept on the unit). Writes nothing."""
    if unit.screened is None:
        v = ctx.settings.validation
        res = validate_records(unit.records, feed, v.suite, v.max_text_chars, v.engine)
        res.bad = unit.read_errors + res.bad
        res.total = len(unit.records) + len(unit.read_errors)
        unit.screened = res
    return unit.screened


def chunk_ahead(ctx: IndexContext, records: Sequence[FeedRecord]) -> int:
    """Speculate on the next batch while this one encodes: chunk its records that the committed
    ledger says changed and queue their new texts behind this batch's. Decides nothing: that
    batch is planned and chunked as always once this one commits, and finds its chunks made and
    its vectors encoded or on the way (anything this guessed wrong is made then, or dropped).
    Returns the texts queued (0 where the embedder has no workers to keep busy)."""
    if ctx.pool is None:
        return 0
    recs = [r for r in last_record_wins(records) if r.op != "delete"]
    old = ctx.ledger.get_documents([r.id for r in recs])
    docs = []
    for r in recs:
        o = old.get(r.id)
        if o is None or o.status == "deleted" or o.version_hash != version_hash(r.title, r.text or "", r.metadata):
            docs.append((r.id, r.title, r.text or "", r.metadata))
    if not docs:
        return 0
    indexed = {(row.chunk_id, row.embed_hash) for rows in ctx.ledger.chunks_for_docs(ctx.collection, [d[0] for d in docs]).values()
               for row in rows}
    chunks = [c for res in ctx.chunker.chunk_ahead(docs) for c in res.chunks if (c.chunk_id, embed_hash(c)) not in indexed]
    texts, lengths, ids = encoder_inputs(chunks)
    ctx.pool.prefetch(texts, lengths=lengths, ids=ids)
    return len(texts)


class UnitsAhead:
    """A source's units with one read ahead: `prepare_next()`, called while a batch encodes, reads
    the next unit, validates it and chunks what changed (`chunk_ahead`), so the encoder workers go
    on to its texts without waiting for this batch's store write and ledger commit. Called once
    before the first unit, it starts the workers on that unit's texts while the unit is planned.
    Only with an encoder pool in this process (`ahead`); a failure while reading ahead surfaces
    when the unit's turn comes, as it would have without the look-ahead."""

    def __init__(self, ctx: IndexContext, units: Iterator[WorkUnit], feed: str, ahead: bool = True) -> None:
        self.ctx = ctx
        self.feed = feed
        self._units = units
        self._next: WorkUnit | None = None
        self._read_error: BaseException | None = None
        self._has_next = False
        self.enabled = ahead and ctx.pool is not None

    def __iter__(self) -> Iterator[WorkUnit]:
        while True:
            if self._read_error is not None:
                err, self._read_error = self._read_error, None
                raise err
            unit = self._next if self._has_next else next(self._units, None)
            self._next, self._has_next = None, False
            if unit is None:
                return
            yield unit

    def prepare_next(self) -> None:
        if not self.enabled or self._has_next:
            return
        try:
            self._next = next(self._units, None)
        except Exception as e:  # noqa: BLE001 - raised at the unit's turn
            self._read_error = e
            return
        self._has_next = True
        if self._next is None:
            return
        try:
            chunk_ahead(self.ctx, screen_unit(self.ctx, self._next, self.feed).good)
        except Exception:  # noqa: BLE001 - speculation only: the unit's own turn redoes it and fails where it should
            self._next.screened = None
