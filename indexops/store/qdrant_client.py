"""A Qdrant server or cluster through qdrant-client (or its local mode for tiny tests)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from indexops.store.fusion import rrf
from indexops.store.protocol import DENSE, SPARSE, Hit, StorePoint, floats


class QdrantClientStore:
    """A Qdrant server or cluster by URL (or qdrant-client local mode for tiny tests)."""

    def __init__(self, url: str, collection: str, dim: int, api_key: str | None = None,
                 shards: int | None = None, replication_factor: int | None = None) -> None:
        from qdrant_client import QdrantClient, models

        self._m = models
        self.collection = collection
        if url == ":memory:":
            self.client = QdrantClient(location=":memory:")
        elif url.startswith(("http://", "https://")):
            self.client = QdrantClient(url=url, api_key=api_key)
        else:
            self.client = QdrantClient(path=url)
        self._server = url.startswith(("http://", "https://"))
        if not self.client.collection_exists(collection):
            self.client.create_collection(
                collection,
                vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                **({"shard_number": shards, "replication_factor": replication_factor} if self._server else {}),
            )
            if self._server:  # payload indexes exist on servers only
                self.client.create_payload_index(collection, "doc_id", models.PayloadSchemaType.KEYWORD)

    def upsert(self, points: Sequence[StorePoint]) -> None:
        m = self._m
        if points:
            self.client.upsert(
                self.collection,
                [
                    m.PointStruct(
                        id=p.point_id,
                        vector={DENSE: floats(p.dense), SPARSE: m.SparseVector(indices=p.sparse[0], values=p.sparse[1])},
                        payload=p.payload,
                    )
                    for p in points
                ],
                wait=True,
            )

    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.client.overwrite_payload(self.collection, payload=payload, points=[point_id], wait=True)

    def delete(self, point_ids: Sequence[str]) -> None:
        if point_ids:
            self.client.delete(self.collection, points_selector=self._m.PointIdsList(points=list(point_ids)), wait=True)

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def iter_points(self, fields: Sequence[str], batch: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        offset = None
        while True:
            recs, offset = self.client.scroll(self.collection, limit=batch, offset=offset, with_payload=list(fields), with_vectors=False)
            for r in recs:
                yield str(r.id), dict(r.payload or {})
            if offset is None:
                return

    def retrieve(self, point_ids: Sequence[str], with_vectors: bool = False) -> list[dict[str, Any]]:
        recs = self.client.retrieve(self.collection, ids=list(point_ids), with_payload=True, with_vectors=with_vectors)
        out = []
        for r in recs:
            d: dict[str, Any] = {"point_id": str(r.id), "payload": dict(r.payload or {})}
            if with_vectors and r.vector:
                d["dense"] = list(r.vector.get(DENSE, []))
            out.append(d)
        return out

    def _hits(self, res: Any) -> list[Hit]:
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in res.points]

    def search_dense(self, vector, limit) -> list[Hit]:
        return self._hits(self.client.query_points(self.collection, query=[float(x) for x in vector], using=DENSE, limit=limit, with_payload=True))

    def search_sparse(self, sparse, limit) -> list[Hit]:
        if not sparse[0]:
            return []
        m = self._m
        return self._hits(self.client.query_points(self.collection, query=m.SparseVector(indices=sparse[0], values=sparse[1]), using=SPARSE, limit=limit, with_payload=True))

    def search_hybrid(self, vector, sparse, limit, prefetch=100, rrf_k=60, weights=None) -> list[Hit]:
        """RRF in `fusion.rrf`, as on Edge: the same total order on every backend."""
        return rrf(self.search_dense(vector, prefetch), self.search_sparse(sparse, prefetch), limit, k=rrf_k, weights=weights)

    def flush(self) -> None:
        return None

    def point_alias(self, alias: str) -> None:
        """Move `alias` to this collection in one atomic request (delete + create)."""
        m = self._m
        ops: list[Any] = []
        existing = {a.alias_name for a in self.client.get_aliases().aliases}
        if alias in existing:
            ops.append(m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=alias)))
        ops.append(m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=self.collection, alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=ops)

    def close(self) -> None:
        self.client.close()
