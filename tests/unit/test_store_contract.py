"""One contract for every VectorStore: Qdrant Edge in-process and qdrant-client local mode."""

from __future__ import annotations

import pytest

from indexops.ids import point_id
from indexops.store.edge import EdgeStore
from indexops.store.factory import open_store
from indexops.store.protocol import StorePoint, is_uuid
from indexops.store.qdrant_client import QdrantClientStore

DIM = 4
# unit vectors along the axes: the nearest neighbour of an axis is unambiguous
AXES = {"a": [1.0, 0.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0, 0.0], "c": [0.0, 0.0, 1.0, 0.0], "d": [0.0, 0.0, 0.0, 1.0]}
# each doc owns one sparse term (10+i) with weight 1, and all share term 99 with a small weight
SPARSE = {k: ([10 + i, 99], [1.0, 0.1]) for i, k in enumerate(AXES)}


def _pid(k: str) -> str:
    return point_id(f"chunk-{k}")


def _points(keys="abcd"):
    return [StorePoint(_pid(k), AXES[k], SPARSE[k], {"doc_id": k, "chunk_hash": f"h-{k}", "metadata": {"n": i}}) for i, k in enumerate(keys)]


@pytest.fixture(params=["edge", "edge-cached", "qdrant-memory"])
def store(request, tmp_path):
    if request.param.startswith("edge"):
        s = EdgeStore(tmp_path / "edge", "contract", DIM, memory="cached" if request.param == "edge-cached" else "cold")
    else:
        s = QdrantClientStore(":memory:", "contract", DIM)
    yield s
    s.close()


def test_empty_store(store):
    assert store.count() == 0
    assert list(store.iter_points(["doc_id"])) == []
    assert store.search_dense(AXES["a"], 3) == []


def test_upsert_count_retrieve(store):
    store.upsert(_points())
    store.flush()
    assert store.count() == 4
    got = store.retrieve([_pid("b"), _pid("d")])
    assert {g["point_id"]: g["payload"]["doc_id"] for g in got} == {_pid("b"): "b", _pid("d"): "d"}
    assert next(g for g in got if g["payload"]["doc_id"] == "d")["payload"]["metadata"] == {"n": 3}
    assert store.retrieve([_pid("zzz")]) == []


def test_retrieve_with_vectors(store):
    store.upsert(_points("ab"))
    (got,) = store.retrieve([_pid("b")], with_vectors=True)
    assert got["dense"] == pytest.approx(AXES["b"])


def test_upsert_is_idempotent_by_point_id(store):
    store.upsert(_points())
    changed = StorePoint(_pid("a"), AXES["b"], SPARSE["a"], {"doc_id": "a", "chunk_hash": "new"})
    store.upsert([changed])
    assert store.count() == 4
    assert store.retrieve([_pid("a")])[0]["payload"]["chunk_hash"] == "new"
    assert {h.payload["doc_id"] for h in store.search_dense(AXES["b"], 2)} == {"a", "b"}


def test_overwrite_payload_replaces_it(store):
    store.upsert(_points("a"))
    store.overwrite_payload(_pid("a"), {"doc_id": "a", "chunk_hash": "h2"})
    assert store.retrieve([_pid("a")])[0]["payload"] == {"doc_id": "a", "chunk_hash": "h2"}


def test_delete(store):
    store.upsert(_points())
    store.delete([_pid("a"), _pid("c")])
    store.delete([])  # no-op
    store.delete([_pid("zzz")])  # unknown ids are fine
    assert store.count() == 2
    assert {p for p, _ in store.iter_points(["doc_id"])} == {_pid("b"), _pid("d")}
    assert store.search_dense(AXES["a"], 1)[0].payload["doc_id"] != "a"


def test_iter_points_pages_and_selects_fields(store):
    store.upsert(_points())
    pts = list(store.iter_points(["doc_id", "chunk_hash"], batch=3))
    assert len(pts) == 4
    assert {p: v for p, v in pts} == {_pid(k): {"doc_id": k, "chunk_hash": f"h-{k}"} for k in "abcd"}


@pytest.mark.parametrize("k", list("abcd"))
def test_search_dense_top_hit(store, k):
    store.upsert(_points())
    hits = store.search_dense(AXES[k], 2)
    assert hits[0].point_id == _pid(k) and hits[0].payload["doc_id"] == k
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 2 and hits[1].score < hits[0].score


@pytest.mark.parametrize("k", list("abcd"))
def test_search_sparse_top_hit(store, k):
    store.upsert(_points())
    hits = store.search_sparse(([10 + "abcd".index(k)], [1.0]), 4)
    assert [h.payload["doc_id"] for h in hits][:1] == [k]
    assert hits[0].score > 0


def test_search_sparse_empty_query(store):
    store.upsert(_points())
    assert store.search_sparse(([], []), 3) == []


@pytest.mark.parametrize("k", list("abcd"))
def test_search_hybrid_top_hit(store, k):
    store.upsert(_points())
    hits = store.search_hybrid(AXES[k], ([10 + "abcd".index(k)], [1.0]), 3)
    assert hits[0].payload["doc_id"] == k
    assert len(hits) == 3


def test_search_hybrid_without_sparse_terms_is_dense(store):
    store.upsert(_points())
    assert store.search_hybrid(AXES["c"], ([], []), 1)[0].payload["doc_id"] == "c"


def test_edge_store_persists_across_reopen(tmp_path):
    s = EdgeStore(tmp_path / "e", "c", DIM)
    s.upsert(_points())
    s.delete([_pid("a")])
    s.close()
    s2 = EdgeStore(tmp_path / "e", "c", DIM)
    try:
        assert s2.count() == 3
        assert s2.search_dense(AXES["b"], 1)[0].payload["doc_id"] == "b"
    finally:
        s2.close()


@pytest.mark.parametrize("memory", ["cold", "cached"])
def test_edge_placement_is_kept_by_merged_segments(tmp_path, memory):
    """`store.memory` is written into the shard's config, and segments built by optimize follow it."""
    import json

    s = EdgeStore(tmp_path / "e", "c", DIM, memory=memory)
    s.upsert(_points())
    s.optimize()
    s.close()
    cfg = json.loads((tmp_path / "e" / "edge_config.json").read_text())
    assert cfg["vectors"]["dense"]["memory"] == memory and cfg["sparse_vectors"]["bm25"]["memory"] == memory
    assert cfg["hnsw_config"]["memory"] == memory and cfg["payload_memory"] == memory
    segs = [json.loads(f.read_text())["config"] for f in (tmp_path / "e" / "segments").glob("*/segment.json")]
    assert segs and all(c["sparse_vector_data"]["bm25"]["index"]["memory"] == memory for c in segs)
    s2 = EdgeStore(tmp_path / "e", "c", DIM, memory="cold" if memory == "cached" else "cached")  # an existing shard keeps its own
    try:
        assert s2.search_dense(AXES["d"], 1)[0].payload["doc_id"] == "d" and s2.count() == 4
    finally:
        s2.close()
    assert json.loads((tmp_path / "e" / "edge_config.json").read_text())["vectors"]["dense"]["memory"] == memory


def test_open_store_backends(tmp_path):
    s = open_store("edge", tmp_path, "col", DIM)
    assert isinstance(s, EdgeStore) and s.path == tmp_path / "collections" / "col"
    s.close()
    q = open_store("qdrant", tmp_path, "col", DIM, url=":memory:")
    assert isinstance(q, QdrantClientStore)
    q.close()
    with pytest.raises(ValueError, match="needs store.url"):
        open_store("qdrant", tmp_path, "col", DIM)


def test_is_uuid():
    assert is_uuid(_pid("a")) and not is_uuid("chunk-a")
