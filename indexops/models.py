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
        _check_finite(v, "metadata")
        return v

    @field_validator("updated_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        return v.astimezone(timezone.utc) if v is not None else None  # SQLite stores no offset

    @model_validator(mode="after")
    def _text_for_upsert(self) -> "FeedRecord":
        if self.op == "upsert":
            if self.text is None or not self.text.strip():
                raise ValueError("text is required and non-empty for an upsert")
            if "\x00" in self.text + self.title:  # PostgreSQL text cannot hold NUL
                raise ValueError("text or title contains a NUL byte")
        return self


def _check_finite(value: Any, path: str) -> None:
    """NaN/inf cannot round-trip through JSON payloads, so they are rejected, not coerced."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} holds a non-finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, f"{path}[{i}]")


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
