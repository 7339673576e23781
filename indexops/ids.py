"""Deterministic ids and content hashes, so re-runs are idempotent on any machine."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from typing import Any

POINT_NAMESPACE = uuid.UUID("6f1c1a52-6d1e-4a8c-9d0e-2f4b1b7c9a10")
_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the form exact-duplicate detection compares."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def canonical_json(value: Any) -> str:
    """Sorted-key compact JSON, the byte form every hash of structured data uses."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()


def text_hash(text: str) -> str:
    """Hash of the normalised text: equal for exact duplicates."""
    return sha256_hex(normalize_text(text))


def version_hash(title: str, text: str, metadata: dict[str, Any]) -> str:
    """Hash of everything that reaches the index: a change here means re-chunk and re-embed."""
    return sha256_hex(title, text, canonical_json(metadata))


def chunk_hash(text: str, title: str, metadata: dict[str, Any]) -> str:
    """Chunk content hash over text, title and metadata (what the snapshot id covers)."""
    return sha256_hex(text, title, canonical_json(metadata))


def chunk_id(doc_id: str, position: int, chunk_text_hash: str, chunker_version: str) -> str:
    return sha256_hex(doc_id, str(position), chunk_text_hash, chunker_version)[:32]


def point_id(chunk_id_: str) -> str:
    """Qdrant point id: uuid5 of the chunk id, never positional."""
    return str(uuid.uuid5(POINT_NAMESPACE, chunk_id_))
