"""Per-collection state: its recipe and settings, and the running snapshot sum and chunk count."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from indexops.ledger.rows import _MOD
from indexops.ledger.schema import index_state


class CollectionStateRepository:
    """The `index_state` table: one row per collection (recipe)."""

    engine: Engine

    def state(self, collection: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(index_state).where(index_state.c.collection == collection)).first()
        if r is None:
            return None
        return {"acc": int(r.acc, 16), "chunks": r.chunks, "recipe": json.loads(r.recipe_json), "snapshot_id": r.snapshot_id}

    def ensure_state(self, collection: str, recipe: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
        try:
            with self.engine.begin() as c:
                if c.execute(select(index_state.c.collection).where(index_state.c.collection == collection)).first():
                    return
                c.execute(
                    insert(index_state).values(
                        collection=collection, acc="0" * 64, chunks=0, recipe_json=json.dumps(recipe, sort_keys=True),
                        settings_json=json.dumps(settings, sort_keys=True, default=str) if settings else None,
                    )
                )
        except IntegrityError:
            pass  # another process opening the same new index inserted the row first: same content

    def set_accumulator(self, collection: str, acc: int, n_chunks: int) -> None:
        """Overwrite the running snapshot sum and chunk count (a repair after a full recount)."""
        with self.engine.begin() as c:
            c.execute(update(index_state).where(index_state.c.collection == collection).values(acc=f"{acc % _MOD:064x}", chunks=n_chunks))

    def collection_settings(self, collection: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(index_state.c.settings_json).where(index_state.c.collection == collection)).first()
        return json.loads(r.settings_json) if r and r.settings_json else None

    def collections(self) -> list[str]:
        with self.engine.connect() as c:
            return list(c.execute(select(index_state.c.collection).order_by(index_state.c.collection)).scalars())
