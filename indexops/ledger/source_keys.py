"""What a keyed source held at each key when it was last applied, and the source's own position
(a table's watermark): the listing a run makes is compared with these to fetch only what changed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine

from indexops.ledger.rows import _chunks_of
from indexops.ledger.schema import source_keys, source_state


class SourceKeyRepository:
    """The `source_keys` and `source_state` tables (written by the batch commit, read by a plan)."""

    engine: Engine

    def source_fingerprints(self, feed: str) -> dict[str, str]:
        """Every key of a keyed source the index holds, with the fingerprint it was applied at."""
        t = source_keys.c
        with self.engine.connect() as c:
            return {k: f for k, f in c.execute(select(t.key, t.fingerprint).where(t.feed == feed))}

    def source_position(self, feed: str) -> dict[str, Any]:
        """A keyed source's stored position (empty before its first commit)."""
        with self.engine.connect() as c:
            r = c.execute(select(source_state.c.state_json).where(source_state.c.feed == feed)).first()
        return {} if r is None else json.loads(r[0])


def write_source_keys(c: Connection, feed: str, versions: dict[str, str], deletes: Sequence[str],
                      state: dict[str, Any] | None) -> None:
    """Inside a batch's transaction: the keys it applied at their fingerprints, the keys it deleted,
    and the source's position after it."""
    t = source_keys.c
    gone: Iterable[str] = list(versions) + list(deletes)
    for part in _chunks_of(list(gone)):
        c.execute(delete(source_keys).where(t.feed == feed, t.key.in_(part)))
    if versions:
        c.execute(insert(source_keys), [{"feed": feed, "key": k, "fingerprint": f} for k, f in versions.items()])
    if state is not None:
        c.execute(delete(source_state).where(source_state.c.feed == feed))
        c.execute(insert(source_state).values(feed=feed, state_json=json.dumps(state, sort_keys=True, default=str)))
