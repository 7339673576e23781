"""A collection's chunk rows: by document, or streamed in chunk-id or point-id order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.engine import Engine

from indexops.ledger.rows import ChunkRow, _chunk_row, _chunks_of
from indexops.ledger.schema import chunks


class ChunkRepository:
    """Reads of the `chunks` table."""

    engine: Engine

    def chunks_for_docs(self, collection: str, doc_ids: Iterable[str]) -> dict[str, list[ChunkRow]]:
        ids = sorted(set(doc_ids))
        out: dict[str, list[ChunkRow]] = {}
        with self.engine.connect() as c:
            for part in _chunks_of(ids):
                q = select(chunks).where(chunks.c.collection == collection, chunks.c.doc_id.in_(part))
                for r in c.execute(q):
                    out.setdefault(r.doc_id, []).append(_chunk_row(r))
        return out

    def iter_chunks(self, collection: str, batch: int = 5000, order: str = "chunk_id") -> Iterator[list[ChunkRow]]:
        """Stream a collection's chunk rows one page at a time (keyset paging on `order`).

        With `order="point_id"`: point ids are canonical lower-case UUID strings with hyphens at
        fixed places, so every collation (SQLite BINARY, PostgreSQL C or a locale) orders them as
        Python compares them; `reconcile` merge-joins this stream with the store's scroll.
        """
        col = chunks.c[order]
        last = ""
        with self.engine.connect() as c:
            while True:
                q = select(chunks).where(chunks.c.collection == collection, col > last).order_by(col).limit(batch)
                rows = [_chunk_row(r) for r in c.execute(q)]
                if not rows:
                    return
                yield rows
                last = getattr(rows[-1], order)

    def iter_chunks_by_point(self, collection: str, batch: int = 1000) -> Iterator[list[ChunkRow]]:
        return self.iter_chunks(collection, batch, order="point_id")
