"""Small helpers shared by the unit tests (settings overlays, records, store/ledger views)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from indexops.models import FeedRecord
from indexops.settings import Settings, load_settings
from tests.conftest import REPO

HASHING_YAML = REPO / "configs" / "hashing.yaml"


def settings_for(overrides: dict[str, Any] | None = None) -> Settings:
    """The hashing-embedder settings with nested overrides (same path as the CLI's flags)."""
    return load_settings(HASHING_YAML, overrides=overrides or {})


def ts(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=timezone.utc)


def up(doc_id: str, text: str, *, title: str = "", metadata: dict | None = None, updated_at: datetime | None = None) -> FeedRecord:
    return FeedRecord(id=doc_id, op="upsert", title=title, text=text, metadata=metadata or {}, updated_at=updated_at)


def rm(doc_id: str, *, updated_at: datetime | None = None) -> FeedRecord:
    return FeedRecord(id=doc_id, op="delete", updated_at=updated_at)


def store_points(ctx) -> dict[str, dict[str, Any]]:
    """point_id -> payload (doc_id, chunk_hash, metadata, title) of every point in the store."""
    return dict(ctx.store.iter_points(["doc_id", "chunk_hash", "metadata", "title", "text"], batch=7))


def ledger_points(ctx) -> dict[str, str]:
    """point_id -> chunk_hash of every chunk row of the context's collection."""
    return {r.point_id: r.chunk_hash for rows in ctx.ledger.iter_chunks(ctx.collection) for r in rows}


def assert_store_matches_ledger(ctx) -> None:
    """Every ledger chunk is a store point with the same chunk hash, and the store holds nothing else."""
    led = ledger_points(ctx)
    pts = store_points(ctx)
    assert set(pts) == set(led), f"store-only: {sorted(set(pts) - set(led))}, ledger-only: {sorted(set(led) - set(pts))}"
    assert {p: v["chunk_hash"] for p, v in pts.items()} == led
    assert ctx.store.count() == len(led) == ctx.ledger.state(ctx.collection)["chunks"]


def doc_ids_in_store(ctx) -> set[str]:
    return {v["doc_id"] for v in store_points(ctx).values()}


def statuses(ctx, ids) -> dict[str, tuple[str, str | None]]:
    return {d: (r.status, r.duplicate_of) for d, r in ctx.ledger.get_documents(ids).items()}
