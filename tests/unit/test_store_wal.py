"""Qdrant Edge shards write their WAL in WAL_OPTIONS-sized segments, and an update is still durable
without a flush when it spans several of them or is larger than one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import qdrant_edge as qe

from indexops.ids import point_id
from indexops.store.edge import WAL_OPTIONS, EdgeStore
from indexops.store.protocol import StorePoint

DIM = 4
ROOT = Path(__file__).resolve().parents[2]


def _wal_sizes(path: Path) -> dict[str, int]:
    return {f.name: f.stat().st_size for f in (path / "wal").iterdir() if f.name != "first-index"}


def test_a_new_shard_writes_wal_segments_of_the_configured_size(tmp_path):
    s = EdgeStore(tmp_path / "edge", "wal", DIM)
    s.close()
    cfg = json.loads((tmp_path / "edge" / "edge_config.json").read_text())
    assert cfg["wal_options"] == WAL_OPTIONS
    sizes = _wal_sizes(tmp_path / "edge")
    assert sizes and set(sizes.values()) == {WAL_OPTIONS["segment_capacity"]}
    # the doc_id index made while creating it survived the WAL being made again
    s = EdgeStore(tmp_path / "edge", "wal", DIM)
    assert "doc_id" in s._shard.info().payload_schema
    s.close()


def test_updates_across_and_beyond_wal_segments_survive_a_process_that_never_flushed(tmp_path):
    path = tmp_path / "edge"
    EdgeStore(path, "wal", DIM).close()
    # ~2.5 KiB of payload a point: 200 points per update (~0.5 MiB) x 20 fill several 4 MiB segments,
    # then one update of 3,000 points (~7.5 MiB) is larger than a segment
    code = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from indexops.ids import point_id
from indexops.store.edge import EdgeStore
from indexops.store.protocol import StorePoint
s = EdgeStore({str(path)!r}, "wal", {DIM})
def pts(lo, hi):
    return [StorePoint(point_id(f"p{{i}}"), [1.0, 0.0, 0.0, float(i % 7)], ([i % 50], [1.0]), {{"doc_id": f"d{{i}}", "text": "w" * 2500}}) for i in range(lo, hi)]
for b in range(20):
    s.upsert(pts(b * 200, b * 200 + 200))
s.upsert(pts(4000, 7000))
s.delete([point_id("p0"), point_id("p4000")])
os._exit(0)  # no flush, no close: only the WAL has these
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))
    assert len(_wal_sizes(path)) > 3  # the updates went through more segments than a shard keeps open
    s = EdgeStore(path, "wal", DIM)
    try:
        assert s.count() == 7000 - 2
        got = s.retrieve([point_id("p6999"), point_id("p3999"), point_id("p0")])
        assert sorted(g["payload"]["doc_id"] for g in got) == ["d3999", "d6999"]
    finally:
        s.close()


def test_a_shard_made_with_the_default_wal_gets_the_options_and_keeps_its_points(tmp_path):
    path = tmp_path / "edge"
    cfg = qe.EdgeConfig(vectors={"dense": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)},
                        sparse_vectors={"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)})
    shard = qe.EdgeShard.create(str(path), cfg)
    shard.close()
    assert set(_wal_sizes(path).values()) == {32 << 20}  # Edge's default segment
    s = EdgeStore(path, "wal", DIM)
    s.upsert([StorePoint(point_id("a"), [1.0, 0.0, 0.0, 0.0], ([1], [1.0]), {"doc_id": "a"})])
    s.close()
    assert json.loads((path / "edge_config.json").read_text())["wal_options"] == WAL_OPTIONS
    s = EdgeStore(path, "wal", DIM)
    try:
        assert s.count() == 1
    finally:
        s.close()
