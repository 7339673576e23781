"""Vector stores behind one small Protocol: Qdrant Edge in-process (default) and a Qdrant
server or cluster through qdrant-client. One collection per recipe, with a named dense vector
and a BM25 sparse vector whose IDF the engine maintains.

What only some stores can do is declared as its own runtime-checkable Protocol (`SupportsOptimize`,
`IndexesInSteps`, `StoredInFiles`, `SupportsServerAlias`), and callers ask with `isinstance`: the
optional capabilities are listed here rather than found by `hasattr` at the call sites.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from indexops.models import json_depth

DENSE = "dense"
SPARSE = "bm25"


def floats(v: Any) -> list[float]:
    """A vector as the list of Python floats the clients take (a numpy row converts in C)."""
    return v.tolist() if hasattr(v, "tolist") else [float(x) for x in v]


@dataclass
class StorePoint:
    point_id: str
    dense: Any  # a float32 numpy row or a sequence of floats
    sparse: tuple[list[int], list[float]]
    payload: dict[str, Any]


@dataclass
class Hit:
    point_id: str
    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    collection: str

    def upsert(self, points: Sequence[StorePoint]) -> None: ...
    def overwrite_payload(self, point_id: str, payload: dict[str, Any]) -> None: ...
    def delete(self, point_ids: Sequence[str]) -> None: ...
    def count(self) -> int: ...
    def iter_points(self, fields: Sequence[str], batch: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]: ...
    def retrieve(self, point_ids: Sequence[str], with_vectors: bool = False) -> list[dict[str, Any]]: ...
    def search_dense(self, vector: Sequence[float], limit: int) -> list[Hit]: ...
    def search_sparse(self, sparse: tuple[list[int], list[float]], limit: int) -> list[Hit]: ...
    def search_hybrid(self, vector: Sequence[float], sparse: tuple[list[int], list[float]], limit: int,
                      prefetch: int = 100, rrf_k: int = 60, weights: Sequence[float] | None = None) -> list[Hit]: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class SupportsOptimize(Protocol):
    """A store whose segments this process merges (Qdrant Edge); a server optimizes on its own."""

    def optimize(self) -> bool: ...


@runtime_checkable
class IndexesInSteps(SupportsOptimize, Protocol):
    """A store that can say whether `optimize()` costs only what was appended since the last one
    (then compacting between batches optimizes instead of closing the store)."""

    @property
    def indexes_in_steps(self) -> bool: ...


@runtime_checkable
class StoredInFiles(Protocol):
    """A store that lives in a directory of its own (Qdrant Edge): its files can be published as
    a read replica."""

    path: Path


@runtime_checkable
class SupportsServerAlias(Protocol):
    """A store on a server that keeps collection aliases (Qdrant server): apps querying it follow `live`."""

    def point_alias(self, alias: str) -> None: ...


MAX_PAYLOAD_DEPTH = 64  # Qdrant reads payloads back with a 128-level recursion limit


def _check_payload(payload: dict[str, Any]) -> None:
    """Refuse a payload Qdrant could write but not read back: in Edge, such a point makes the
    shard's WAL unreadable and the collection would never open again.

    Raises:
        ValueError: the payload nests deeper than `MAX_PAYLOAD_DEPTH`.
    """
    if json_depth(payload) > MAX_PAYLOAD_DEPTH:
        raise ValueError(f"payload nested deeper than {MAX_PAYLOAD_DEPTH} levels; Qdrant could not read it back")


def is_uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
        return True
    except ValueError:
        return False
