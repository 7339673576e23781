"""Which store a config names: `open_store` opens (creating if needed) a recipe's collection."""

from __future__ import annotations

import os
from pathlib import Path

from indexops.store.edge import EdgeStore
from indexops.store.protocol import VectorStore
from indexops.store.qdrant_client import QdrantClientStore


def open_store(backend: str, workspace: str | Path, collection: str, dim: int, url: str | None = None, api_key_env: str | None = None,
               shards: int | None = None, replication_factor: int | None = None, memory: str = "cold") -> VectorStore:
    """Open (creating if needed) the collection for a recipe on the configured back end."""
    if backend == "edge":
        return EdgeStore(Path(workspace) / "collections" / collection, collection, dim, memory)
    if not url:
        raise ValueError("store.backend 'qdrant' needs store.url (a server URL, ':memory:' or a path)")
    api_key = os.environ.get(api_key_env) if api_key_env else None
    return QdrantClientStore(url, collection, dim, api_key=api_key, shards=shards, replication_factor=replication_factor)
