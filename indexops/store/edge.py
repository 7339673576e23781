"""Qdrant Edge in-process (the default store): one shard per collection in the workspace, with
the segment count and WAL segment size chosen for long loads."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from indexops.store.fusion import rrf
from indexops.store.protocol import DENSE, SPARSE, Hit, StorePoint, _check_payload, floats

# Segments Edge's merge optimizer leaves (Qdrant's default: one per core). With more, indexing the
# points a long load appended makes a new segment in time proportional to them; with two, every
# optimize merges the whole shard (measured, 64-dim points, a step every 20k: 3.8 -> 6.5 s and a
# 691 MiB peak at 60k with two segments; 3.4-3.8 s and 426 MiB with 64; with 16, every 25k points,
# `bench/load_memory.py`: 5.9 and 6.6 s, 543 MiB).
SEGMENTS = 16
# Write-ahead-log segments of 4 MiB instead of Edge's (Qdrant's) 32 MiB. Opening a shard reads its WAL
# segments back, and Edge keeps the last closed one beside the open one: a shard that had taken more
# than 32 MiB of updates put 64 MiB of WAL into the memory of every process that opened it (1M points:
# 64 of the 185 MiB an open adds, against 19 at 10k). An update larger than a segment still fits (the
# segment grows to hold it). `edge_config.json` carries these options; Edge's Python config does not.
WAL_OPTIONS = {"segment_capacity": 4 << 20, "segment_queue_len": 0, "retain_closed": 1}


class EdgeStore:
    """Qdrant Edge shard in the workspace: WAL, HNSW, sparse IDF, in-process."""

    def __init__(self, path: str | Path, collection: str, dim: int, memory: str = "cold", read_only: bool = False) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self.collection = collection
        self.path = Path(path)
        self.read_only = read_only  # a published replica (indexops/index/replicas.py): searched, never written
        if read_only:
            if not (self.path / "edge_config.json").exists():
                raise FileNotFoundError(f"no Qdrant Edge shard at {self.path}")
        elif not (self.path / "edge_config.json").exists():
            self._create(dim, memory)
        else:
            _set_wal_options(self.path)
        self._shard = qe.EdgeShard.load(str(self.path))

    def _create(self, dim: int, memory: str) -> None:
        """Build the shard in a scratch directory beside its place, then rename it in.

        Placement: Edge by default keeps the sparse index in RAM and reads dense vectors into the
        page cache when a shard opens, so every process that opens it (each CLI command, each
        ingest) pays time and memory in proportion to the corpus (100k points: +169 MiB). `cold`
        maps vectors, HNSW graph, sparse index, payload and the doc_id index from disk and reads
        what a query or an update touches. It is fixed when a segment is written: it applies to
        new collections and to every segment they merge later.

        Edge writes its WAL and segment directories before `edge_config.json`: a process killed
        in between left a directory that Edge would neither load nor create again ("path already
        contains segment data"). A rename is atomic, so a crash now leaves only a scratch dir.
        """
        qe = self._qe
        m = qe.Memory.Cold if memory == "cold" else qe.Memory.Cached
        cfg = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine, memory=m)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, memory=m)},
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000, memory=m),  # Qdrant's defaults
            payload_memory=m,
            id_tracker_memory=m,
            # indexing what a long load appended makes one more segment instead of a merge of all of them
            optimizers=qe.EdgeOptimizersConfig(default_segment_number=SEGMENTS),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # half-made by an older version that crashed: no data can be in it
            self.path.rename(self.path.with_name(f"{self.path.name}.incomplete-{os.getpid()}-{time.time_ns()}"))
        scratch = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.creating-", dir=self.path.parent))
        try:
            shard = qe.EdgeShard.create(str(scratch / "shard"), cfg)
            # its WAL was made with the default segment size and holds no operation yet: made again
            # with WAL_OPTIONS on load, as if created with them
            shard.close()
            _set_wal_options(scratch / "shard")
            shutil.rmtree(scratch / "shard" / "wal")
            shard = qe.EdgeShard.load(str(scratch / "shard"))
            # doc_id finds a document's chunks (deletes, checks); it never filters a vector search
            shard.update(qe.UpdateOperation.create_field_index("doc_id", qe.KeywordIndexParams(memory=m, enable_hnsw=False)))
            shard.flush()
            shard.close()
            try:
                os.rename(scratch / "shard", self.path)
            except OSError:
                if not (self.path / "edge_config.json").exists():  # not a concurrent creator's success
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    @property
    def indexes_in_steps(self) -> bool:
        """Whether `optimize()` costs what was appended since the last one, not the whole shard:
        shards made before SEGMENTS was set merge everything into a couple of segments each time."""
        try:
            cfg = json.loads((self.path / "edge_config.json").read_text())
        except (OSError, ValueError):
            return False
        return ((cfg.get("optimizers") or {}).get("default_segment_number") or 0) >= SEGMENTS

    def _vec(self, p: StorePoint) -> dict[str, Any]:
        return {DENSE: floats(p.dense), SPARSE: self._qe.SparseVector(p.sparse[0], p.sparse[1])}

    def _writable(self) -> None:
        if self.read_only:
            raise PermissionError(f"{self.path} is a published replica: readers never write it (writes go to the writer's shard)")

    def upsert(self, points: Sequence[StorePoint]) -> None:
        self._writable()
        if points:
            qe = self._qe
            for p in points:
                _check_payload(p.payload)
            self._shard.update(qe.UpdateOperation.upsert_points([qe.Point(p.point_id, self._vec(p), p.payload) for p in points]))

    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self._writable()
        _check_payload(payload)
        self._shard.update(self._qe.UpdateOperation.overwrite_payload([point_id], payload))

    def delete(self, point_ids: Sequence[str]) -> None:
        self._writable()
        if point_ids:
            self._shard.update(self._qe.UpdateOperation.delete_points(list(point_ids)))

    def count(self) -> int:
        return int(self._shard.count(self._qe.CountRequest(exact=True)))

    def iter_points(self, fields: Sequence[str], batch: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        offset = None
        while True:
            recs, offset = self._shard.scroll(self._qe.ScrollRequest(offset=offset, limit=batch, with_payload=list(fields)))
            for r in recs:
                yield str(r.id), dict(r.payload or {})
            if offset is None:
                return

    def retrieve(self, point_ids: Sequence[str], with_vectors: bool = False) -> list[dict[str, Any]]:
        recs = self._shard.retrieve(list(point_ids), with_payload=True, with_vector=with_vectors)
        out = []
        for r in recs:
            d: dict[str, Any] = {"point_id": str(r.id), "payload": dict(r.payload or {})}
            if with_vectors and r.vector is not None:
                d["dense"] = list(r.vector.get(DENSE, []))
            out.append(d)
        return out

    def _hits(self, pts: list[Any]) -> list[Hit]:
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in pts]

    def search_dense(self, vector: Sequence[float], limit: int) -> list[Hit]:
        qe = self._qe
        return self._hits(self._shard.query(qe.QueryRequest(limit=limit, query=qe.Query.Nearest([float(x) for x in vector], using=DENSE), with_payload=True)))

    def search_sparse(self, sparse: tuple[list[int], list[float]], limit: int) -> list[Hit]:
        qe = self._qe
        if not sparse[0]:
            return []
        return self._hits(self._shard.query(qe.QueryRequest(limit=limit, query=qe.Query.Nearest(qe.SparseVector(*sparse), using=SPARSE), with_payload=True)))

    def search_hybrid(self, vector, sparse, limit, prefetch=100, rrf_k=60, weights=None) -> list[Hit]:
        """RRF of a dense and a sparse search of `prefetch` points each, fused in `fusion.rrf` (a
        total order; Qdrant's own fusion leaves the order of tied scores open)."""
        return rrf(self.search_dense(vector, prefetch), self.search_sparse(sparse, prefetch), limit, k=rrf_k, weights=weights)

    def flush(self) -> None:
        if not self.read_only:
            self._shard.flush()

    def optimize(self) -> bool:
        """Merge segments and build the HNSW index in-process; True when anything changed."""
        self._writable()
        changed = bool(self._shard.optimize())
        self._shard.flush()
        return changed

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._shard.close()


def _set_wal_options(path: Path) -> None:
    """Give a shard's persisted config WAL_OPTIONS unless it has WAL options already. A shard made
    before keeps its 32 MiB segments until its WAL moves past them (new segments take the new size)."""
    cfg_path = path / "edge_config.json"
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("wal_options"):
        return
    cfg["wal_options"] = WAL_OPTIONS
    tmp = cfg_path.with_name(f".{cfg_path.name}.{os.getpid()}-{time.time_ns()}")
    try:
        tmp.write_text(json.dumps(cfg))
        os.replace(tmp, cfg_path)  # a reader sees the old config or the new one, never half of it
    except OSError:  # a shard this process may not write keeps the default
        tmp.unlink(missing_ok=True)
