"""The maintenance flow under Prefect's test harness: drift is repaired and reported; drift that
cannot be repaired fails the run with a message that names it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from flows.ingest import ingest
from flows.maintenance import maintenance
from indexops.index.context import open_index
from indexops.ledger import documents
from indexops.settings import load_settings
from indexops.store.protocol import StorePoint
from tests.conftest import REPO, write_jsonl

HASHING = str(REPO / "configs" / "hashing.yaml")


def _workspace(tmp_path):
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    write_jsonl(feed / "000001-a.jsonl", [{"id": f"m{i}", "text": f"maintenance document {i} on topic {i % 3}"} for i in range(8)])
    ingest(feed_path=str(feed), workspace=str(ws), config_path=HASHING)
    return ws


def _plant(ws, *, lose_text: bool = False) -> str:
    """Delete one point behind the ledger's back and add a foreign one; returns the lost point."""
    ctx = open_index(ws, load_settings(HASHING))
    try:
        rows = {r.doc_id: r for rows in ctx.ledger.iter_chunks(ctx.collection) for r in rows}
        lost = rows["m3"]
        ctx.store.delete([lost.point_id])
        ctx.store.upsert([StorePoint("00000000-0000-4000-8000-000000000001", [0.5] * ctx.embedder.dim, ([3], [1.0]), {"doc_id": "x"})])
        if lose_text:
            with ctx.ledger.engine.begin() as c:
                c.execute(update(documents).where(documents.c.doc_id == "m3").values(status="deleted", text=None))
        return lost.point_id
    finally:
        ctx.close()


def test_maintenance_repairs_drift_and_publishes_a_report(tmp_path):
    ws = _workspace(tmp_path)
    _plant(ws)
    out = maintenance(workspace=str(ws), config_path=HASHING)
    assert out["ok"] and out["found"]["n_missing"] == 1 and out["found"]["n_extra"] == 1
    assert out["repaired"] == {"deleted": 1, "rewritten": 1, "accumulator_reset": 0}
    assert out["remaining"]["clean"] and "optimized" in out

    async def read():
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        async with get_client() as c:
            return await c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["reconcile"])))

    md = asyncio.run(read())[0].data
    assert "consistent" in md and "| missing in store | 1 | 0 |" in md
    again = maintenance(workspace=str(ws), config_path=HASHING, optimize=False)
    assert again["ok"] and again["found"]["clean"] and again["repaired"] == {}


def test_maintenance_fails_clearly_when_drift_cannot_be_repaired(tmp_path):
    ws = _workspace(tmp_path)
    lost = _plant(ws, lose_text=True)
    state = maintenance(workspace=str(ws), config_path=HASHING, return_state=True)
    assert state.is_failed()
    msg = str(state.result(raise_on_failure=False))
    assert "does not match the ledger after repair" in msg and "1 point(s) missing" in msg and lost in msg
    assert "document is deleted in the ledger" in msg


def test_maintenance_prunes_the_band_rows_changed_documents_left_behind(tmp_path):
    """Ingest leaves a changed or deleted document's LSH rows in place (lookups skip them);
    maintenance deletes them: the rewritten document's old bands and the deleted one's."""
    from indexops.ingest.dedupe import lsh_params
    from indexops.ledger import Ledger

    ws = _workspace(tmp_path)
    write_jsonl(tmp_path / "feed" / "000002-b.jsonl", [{"id": "m1", "text": "a rewritten text about another subject entirely"},
                                                      {"id": "m2", "op": "delete"}])
    ingest(feed_path=str(tmp_path / "feed"), workspace=str(ws), config_path=HASHING)
    s = load_settings(HASHING).dedupe
    bands, _ = lsh_params(s.near_threshold, s.num_perm)
    led = Ledger.for_workspace(ws)
    try:
        before = sum(led.lsh_rows().values())
    finally:
        led.close()
    out = maintenance(workspace=str(ws), config_path=HASHING, optimize=False)
    assert out["ok"] and out["lsh_rows_pruned"] == 2 * bands
    led = Ledger.for_workspace(ws)
    try:
        assert led.lsh_rows() == {"lsh_bands": before - 2 * bands, "lsh_recent": 0} == {"lsh_bands": 8 * bands - bands, "lsh_recent": 0}
    finally:
        led.close()
    assert maintenance(workspace=str(ws), config_path=HASHING, optimize=False)["lsh_rows_pruned"] == 0
