"""Records, documents, chunks and run summaries shared by every stage."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class FeedRecord(BaseModel):
    """One validated line of a delta feed."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=512)
    op: Literal["upsert", "delete"] = "upsert"
    title: str = ""
    text: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    updated_at: datetime | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_is_text(cls, v: Any) -> Any:
        if isinstance(v, bool) or v is None:
            raise ValueError("id must be a non-empty string")
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            raise ValueError("id must be a string, not a float")
        if isinstance(v, str):
            v = v.strip()
            if "\x00" in v:
                raise ValueError("id contains a NUL byte")
        return v

    @field_validator("op", mode="before")
    @classmethod
    def _op_default(cls, v: Any) -> Any:
        return "upsert" if v is None or (isinstance(v, str) and not v.strip()) else v

    @field_validator("title", mode="before")
    @classmethod
    def _title_default(cls, v: Any) -> Any:
        return "" if v is None else v

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_object(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError("metadata must be an object")
        _check_json_value(v, "metadata")
        return v

    @field_validator("updated_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        try:
            return v.astimezone(timezone.utc) if v is not None else None  # SQLite stores no offset
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise ValueError("updated_at is out of range in UTC") from None

    @model_validator(mode="after")
    def _text_for_upsert(self) -> "FeedRecord":
        if self.op == "upsert":
            if self.text is None or not self.text.strip():
                raise ValueError("text is required and non-empty for an upsert")
            if "\x00" in self.text + self.title:  # PostgreSQL text cannot hold NUL
                raise ValueError("text or title contains a NUL byte")
        return self


MAX_METADATA_DEPTH = 32
_INT_RANGE = (-(1 << 63), (1 << 64) - 1)


def json_depth(value: Any) -> int:
    """Nesting depth of objects and arrays (a scalar is 0), without recursion."""
    depth = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, (list, tuple)):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in v)
    return depth


def _check_json_value(value: Any, path: str) -> None:
    """Metadata must reach the store unchanged, so what it cannot hold is rejected, not coerced:
    NaN/inf (no JSON form), integers beyond 64 bits (stored as lossy floats), non-JSON types,
    and nesting deeper than `MAX_METADATA_DEPTH` (Qdrant reads payloads with a 128-level limit:
    a deeper one makes the Edge shard's WAL unreadable, so the collection would not reopen)."""
    stack = [(value, path, 1)]
    while stack:
        v, p, d = stack.pop()
        if isinstance(v, dict):
            if d > MAX_METADATA_DEPTH:
                raise ValueError(f"{path} is nested deeper than {MAX_METADATA_DEPTH} levels")
            for k, x in v.items():
                if not isinstance(k, str):
                    raise ValueError(f"{p} has a non-string key {k!r}")
                stack.append((x, f"{p}.{k}", d + 1))
        elif isinstance(v, list):
            if d > MAX_METADATA_DEPTH:
                raise ValueError(f"{path} is nested deeper than {MAX_METADATA_DEPTH} levels")
            stack.extend((x, f"{p}[{i}]", d + 1) for i, x in enumerate(v))
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"{p} holds a non-finite number")
        elif isinstance(v, int) and not isinstance(v, bool):
            if not _INT_RANGE[0] <= v <= _INT_RANGE[1]:
                raise ValueError(f"{p} holds an integer beyond 64 bits (the store would round it)")
        elif not (v is None or isinstance(v, (str, bool))):
            raise ValueError(f"{p} holds a {type(v).__name__}, which JSON cannot represent")


class SourceRecord(BaseModel):
    """A record as read from a file, before validation, with where it came from."""

    file: str
    line: int
    raw: dict[str, Any]


class Quarantined(BaseModel):
    """A rejected record with the reason and its position in the source."""

    feed: str
    file: str
    line: int
    record_id: str | None = None
    reason: str
    excerpt: str = ""


class Chunk(BaseModel):
    """One indexed piece of a document; ids are deterministic (see `ids.py`)."""

    chunk_id: str
    doc_id: str
    position: int
    text: str
    embed_text: str
    chunk_hash: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    tokens: int | None = None  # embed text length in the model's tokens where the chunker counted them (sorts encoder slices)
    # the embed text's token ids (little-endian uint16, or uint32 for vocabularies over 65,536; no
    # special tokens) where the chunker could cut them exactly from the document's: the encoder
    # then does not tokenize the text again
    token_ids: bytes | None = Field(default=None, repr=False)


class BatchCounts(BaseModel):
    """What one batch or run did, for artifacts and the CLI."""

    received: int = 0
    upserted: int = 0
    deleted: int = 0
    unchanged: int = 0
    stale: int = 0
    delete_unknown: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    chunk_duplicates: int = 0
    promoted: int = 0
    quarantined: int = 0
    chunks_embedded: int = 0
    chunks_deleted: int = 0

    def add(self, other: "BatchCounts") -> "BatchCounts":
        return BatchCounts(**{k: getattr(self, k) + getattr(other, k) for k in type(self).model_fields})
