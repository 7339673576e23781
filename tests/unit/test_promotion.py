"""Blue/green: a second recipe built from the ledger, promote and rollback round trip."""

from __future__ import annotations

import pytest

from indexops.index.context import open_collection, open_index
from indexops.index.promotion import ensure_live, promote, rollback
from indexops.index.reader import open_live
from indexops.index.rebuild import rebuild_collection
from indexops.index.snapshot import publish_snapshot
from indexops.ingest.driver import ingest_path
from tests.conftest import REPO

MINI = REPO / "tests" / "data" / "mini_beir"


def _build(ctx):
    rebuild_collection(ctx, "rebuild", batch=25)
    return publish_snapshot(ctx, "rebuild")


def test_rebuild_promote_rollback_round_trip(tmp_path, hashing_settings):
    ws = tmp_path / "ws"
    blue = open_index(ws, hashing_settings)
    ingest_path(blue, MINI, "beir")
    blue_snap = publish_snapshot(blue, "r")["snapshot_id"]
    assert ensure_live(blue.ledger, blue.collection)["collection"] == blue.collection

    green_settings = hashing_settings.model_copy(update={"chunking": hashing_settings.chunking.model_copy(update={"max_tokens": 48, "overlap_tokens": 8})})
    green = open_index(ws, green_settings)
    assert green.collection != blue.collection
    m = _build(green)
    assert m["documents"] == 60 and m["chunks"] > blue.ledger.state(blue.collection)["chunks"]
    assert _build(green)["snapshot_id"] == m["snapshot_id"]  # resumable: a second build changes nothing
    assert green.store.count() == m["chunks"]

    a = promote(blue.ledger, m["snapshot_id"][:12], reason="test")
    assert a["collection"] == green.collection
    live = open_live(ws, hashing_settings)
    assert live.collection == green.collection
    live.close()
    b = rollback(blue.ledger)
    assert b["collection"] == blue.collection and b["snapshot_id"] == blue_snap
    assert [h["action"] for h in blue.ledger.alias_history()] == ["init", "promote", "rollback"]
    with pytest.raises(LookupError):
        promote(blue.ledger, "ffffffffffff")
    reopened = open_collection(ws, green.collection)
    assert reopened.settings.chunking.max_tokens == 48
    for c in (reopened, green, blue):
        c.close()


def test_promote_moves_the_server_alias_before_the_ledger(tmp_path, hashing_settings):
    """With a Qdrant server back end the server-side alias follows; if switching fails, the
    ledger keeps the old alias (it never claims a switch that did not happen)."""
    from indexops.store.qdrant_client import QdrantClientStore

    ws = tmp_path / "ws"
    blue = open_index(ws, hashing_settings)
    ingest_path(blue, MINI, "beir")
    ensure_live(blue.ledger, blue.collection)
    snap = publish_snapshot(blue, "r")["snapshot_id"]
    server = QdrantClientStore(":memory:", blue.collection, 4)
    moved = []

    def switch(collection):
        moved.append(collection)
        server.collection = collection
        server.point_alias("live")

    promote(blue.ledger, snap, switch=switch)
    assert moved == [blue.collection]
    assert {a.alias_name: a.collection_name for a in server.client.get_aliases().aliases} == {"live": blue.collection}

    def broken(collection):
        raise ConnectionError("qdrant unreachable")

    before = blue.ledger.alias_history()
    with pytest.raises(ConnectionError):
        promote(blue.ledger, snap, switch=broken)
    assert blue.ledger.alias_history() == before
    blue.close()
