"""Snapshots (content-addressed manifests per collection) and the aliases that point readers at one."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from indexops.ledger.rows import _aware
from indexops.ledger.schema import alias_history, aliases, index_state, snapshots, utcnow


class SnapshotRepository:
    """The `snapshots`, `aliases` and `alias_history` tables."""

    engine: Engine

    def record_snapshot(self, collection: str, snapshot_id: str, run_id: str | None, manifest: dict[str, Any]) -> bool:
        """Store a snapshot unless it is the latest already; returns True when a new one was written."""
        with self.engine.begin() as c:
            latest = c.execute(
                select(snapshots.c.snapshot_id).where(snapshots.c.collection == collection).order_by(snapshots.c.seq.desc()).limit(1)
            ).first()
            c.execute(update(index_state).where(index_state.c.collection == collection).values(snapshot_id=snapshot_id))
            if latest is not None and latest.snapshot_id == snapshot_id:
                return False
            c.execute(
                insert(snapshots).values(
                    snapshot_id=snapshot_id, collection=collection, parent=manifest.get("parent"), created_at=utcnow(),
                    run_id=run_id, documents=manifest["documents"], chunks=manifest["chunks"],
                    manifest_json=json.dumps(manifest, sort_keys=True),
                )
            )
            return True

    def latest_snapshot(self, collection: str | None = None) -> dict[str, Any] | None:
        q = select(snapshots).order_by(snapshots.c.seq.desc()).limit(1)
        if collection:
            q = q.where(snapshots.c.collection == collection)
        with self.engine.connect() as c:
            r = c.execute(q).first()
        return None if r is None else _snap(r)

    def get_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            rows = c.execute(select(snapshots).where(snapshots.c.snapshot_id.startswith(snapshot_id)).order_by(snapshots.c.seq.desc())).all()
        ids = {r.snapshot_id for r in rows}
        if len(ids) > 1:
            raise ValueError(f"snapshot prefix {snapshot_id!r} is ambiguous: {sorted(ids)}")
        return _snap(rows[0]) if rows else None

    def list_snapshots(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [_snap(r) for r in c.execute(select(snapshots).order_by(snapshots.c.seq))]

    def alias(self, name: str = "live") -> dict[str, Any] | None:
        with self.engine.connect() as c:
            r = c.execute(select(aliases).where(aliases.c.name == name)).first()
        return None if r is None else {"name": r.name, "collection": r.collection, "snapshot_id": r.snapshot_id,
                                       "updated_at": _aware(r.updated_at).isoformat(), "pinned": bool(r.pinned)}

    def set_alias(self, name: str, collection: str, snapshot_id: str | None, action: str, reason: str | None = None,
                  pinned: bool = False) -> None:
        """Point an alias at a collection; `pinned` holds readers on exactly `snapshot_id`."""
        now = utcnow()
        with self.engine.begin() as c:
            c.execute(delete(aliases).where(aliases.c.name == name))
            c.execute(insert(aliases).values(name=name, collection=collection, snapshot_id=snapshot_id, updated_at=now, pinned=1 if pinned else None))
            c.execute(insert(alias_history).values(name=name, collection=collection, snapshot_id=snapshot_id, action=action, reason=reason, at=now))

    def alias_history(self, name: str = "live") -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(alias_history).where(alias_history.c.name == name).order_by(alias_history.c.id)).all()
        return [{"collection": r.collection, "snapshot_id": r.snapshot_id, "action": r.action, "reason": r.reason, "at": _aware(r.at).isoformat()} for r in rows]


def _snap(r: Any) -> dict[str, Any]:
    m = json.loads(r.manifest_json)
    m.setdefault("snapshot_id", r.snapshot_id)
    m["created_at"] = _aware(r.created_at).isoformat()
    m["run_id"] = r.run_id
    return m
