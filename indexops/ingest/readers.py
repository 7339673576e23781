"""Read one batch file (.jsonl, .csv, .parquet) into raw records with their line numbers.

A reader never raises on bad content: every line it cannot use becomes a `Quarantined`
entry with the reason and position, so good lines of the same file still land.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from indexops.models import Quarantined, SourceRecord, json_depth

SUPPORTED = (".jsonl", ".ndjson", ".csv", ".parquet")
_EXCERPT = 200
MAX_NESTING = 64  # deeper lines are quarantined here, so no later stage recurses that far


class FeedFileError(Exception):
    """The file as a whole cannot be read (vanished, unreadable, wrong Parquet schema)."""


def is_batch_file(p: Path) -> bool:
    return p.is_file() and is_batch_name(p.name)


def _excerpt(b: bytes | str) -> str:
    s = b.decode("utf-8", "replace") if isinstance(b, bytes) else b
    return s[:_EXCERPT]


def read_batch_file(path: str | Path, feed: str, max_line_bytes: int = 50_000_000) -> tuple[list[SourceRecord], list[Quarantined]]:
    """Parse a batch file.

    Args:
        path: the file.
        feed: feed name recorded on quarantine rows.
        max_line_bytes: longer JSONL lines are quarantined unparsed (memory guard).

    Returns:
        (records, quarantined).

    Raises:
        FeedFileError: the file cannot be opened or its schema is unusable.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FeedFileError(f"batch file {p.name!r} disappeared before it could be read") from None
    except OSError as e:
        raise FeedFileError(f"batch file {p.name!r} cannot be read: {e.strerror}") from None
    return parse_batch_bytes(data, p.name, feed, max_line_bytes)


def parse_batch_bytes(data: bytes, name: str, feed: str, max_line_bytes: int = 50_000_000) -> tuple[list[SourceRecord], list[Quarantined]]:
    """Parse a batch file's bytes (read from a local disk or an object store); `name`'s suffix says the format.

    Raises:
        FeedFileError: the format is unsupported or its schema is unusable.
    """
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl(data, name, feed, max_line_bytes)
    if suffix == ".csv":
        return _csv(data, name, feed)
    if suffix == ".parquet":
        return _parquet(data, name, feed)
    raise FeedFileError(f"unsupported batch file type {suffix!r} ({name}); use one of {', '.join(SUPPORTED)}")


def is_batch_name(name: str) -> bool:
    """A file name a feed applies (not hidden, not a partial upload, a supported format)."""
    return not name.startswith((".", "~")) and not name.endswith((".tmp", ".part")) and Path(name).suffix.lower() in SUPPORTED


def _jsonl(data: bytes, name: str, feed: str, max_line_bytes: int) -> tuple[list[SourceRecord], list[Quarantined]]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    recs: list[SourceRecord] = []
    bad: list[Quarantined] = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.rstrip(b"\r")
        if not line.strip():
            continue
        if len(line) > max_line_bytes:
            bad.append(Quarantined(feed=feed, file=name, line=i, reason=f"line longer than {max_line_bytes} bytes", excerpt=_excerpt(line[:_EXCERPT])))
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            bad.append(Quarantined(feed=feed, file=name, line=i, reason=f"invalid UTF-8 at byte {e.start}", excerpt=_excerpt(line)))
            continue
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except ValueError as e:
            bad.append(Quarantined(feed=feed, file=name, line=i, reason=f"malformed JSON: {e}", excerpt=_excerpt(text)))
            continue
        except RecursionError:
            bad.append(Quarantined(feed=feed, file=name, line=i, reason=f"JSON nested deeper than {MAX_NESTING} levels", excerpt=_excerpt(text)))
            continue
        if not isinstance(obj, dict):
            bad.append(Quarantined(feed=feed, file=name, line=i, reason=f"a line must be a JSON object, got {type(obj).__name__}", excerpt=_excerpt(text)))
            continue
        if json_depth(obj) > MAX_NESTING:
            bad.append(Quarantined(feed=feed, file=name, line=i, reason=f"JSON nested deeper than {MAX_NESTING} levels", excerpt=_excerpt(text)))
            continue
        try:  # JSON escapes can smuggle in lone surrogates, which no store can encode
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            bad.append(Quarantined(feed=feed, file=name, line=i, reason="invalid Unicode: a lone surrogate escape (\\ud800-\\udfff)", excerpt=_excerpt(text.encode("utf-8", "replace"))))
            continue
        recs.append(SourceRecord(file=name, line=i, raw=obj))
    return recs, bad


_CSV_FIELD_LIMIT = 2**31 - 1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _csv(data: bytes, name: str, feed: str) -> tuple[list[SourceRecord], list[Quarantined]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # decode line by line so valid rows still land
        text = data.decode("utf-8-sig", "replace")
        bad_at = e.start
    else:
        bad_at = None
    recs: list[SourceRecord] = []
    bad: list[Quarantined] = []
    # the stdlib default (128 KiB per field) would fail a whole file over one long text;
    # length is validation's job (validation.max_text_chars), so allow any field here
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as e:
        raise FeedFileError(f"CSV batch {name!r} has an unreadable header: {e}") from None
    if not fieldnames or "id" not in fieldnames:
        raise FeedFileError(f"CSV batch {name!r} has no 'id' column (columns: {fieldnames})")
    offset = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            bad.append(Quarantined(feed=feed, file=name, line=reader.line_num, reason=f"malformed CSV: {e}"))
            continue
        line = reader.line_num
        if "\ufffd" in "".join(v or "" for v in row.values() if isinstance(v, str)) and bad_at is not None:
            bad.append(Quarantined(feed=feed, file=name, line=line, reason="invalid UTF-8", excerpt=_excerpt(str(row))))
            continue
        if None in row:
            bad.append(Quarantined(feed=feed, file=name, line=line, record_id=row.get("id") or None, reason="more fields than the header", excerpt=_excerpt(str(row))))
            continue
        obj: dict[str, Any] = {k: (v if v != "" else None) for k, v in row.items()}
        if obj.get("metadata"):
            try:
                obj["metadata"] = json.loads(obj["metadata"], parse_constant=_reject_constant)
            except (ValueError, RecursionError) as e:
                why = str(e) if isinstance(e, ValueError) else f"nested deeper than {MAX_NESTING} levels"
                bad.append(Quarantined(feed=feed, file=name, line=line, record_id=obj.get("id"), reason=f"metadata is not JSON: {why}", excerpt=_excerpt(str(row))))
                continue
            if json_depth(obj["metadata"]) > MAX_NESTING:
                bad.append(Quarantined(feed=feed, file=name, line=line, record_id=obj.get("id"), reason=f"JSON nested deeper than {MAX_NESTING} levels", excerpt=_excerpt(str(row)[:_EXCERPT])))
                continue
        recs.append(SourceRecord(file=name, line=line, raw=obj))
        offset += 1
    return recs, bad


def _parquet(data: bytes, name: str, feed: str) -> tuple[list[SourceRecord], list[Quarantined]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as e:  # noqa: BLE001 - any parse failure is a file-level error for the user
        raise FeedFileError(f"Parquet batch {name!r} cannot be read: {e}") from None
    if "id" not in table.column_names:
        raise FeedFileError(f"Parquet batch {name!r} has no 'id' column (schema: {', '.join(table.column_names)})")
    recs = []
    for i, row in enumerate(table.to_pylist(), start=1):
        if isinstance(row.get("metadata"), str):
            try:
                row["metadata"] = json.loads(row["metadata"])
            except ValueError:
                pass
        for k, v in list(row.items()):
            if isinstance(v, float) and math.isnan(v) and k != "metadata":
                row[k] = None
        if "metadata" in row:
            row["metadata"] = _temporal_to_iso(row["metadata"])
        recs.append(SourceRecord(file=name, line=i, raw=row))
    return recs, []


def _temporal_to_iso(value: Any) -> Any:
    """Parquet timestamps and dates inside metadata become ISO 8601 strings, their JSON form."""
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _temporal_to_iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_temporal_to_iso(v) for v in value]
    return value
