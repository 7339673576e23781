"""Hostile feeds at the core: files that vanish or change between scan and read, metadata the
store could not read back, half-created store directories, and fuzzing of the readers and the
record model (they may reject anything, but only with their own exceptions)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import indexops.ingest.units as units_mod
from indexops.ingest.driver import IngestFailed, ingest_path
from indexops.ingest.readers import FeedFileError, read_batch_file
from indexops.ingest.validate import BatchRejected
from indexops.models import MAX_METADATA_DEPTH, FeedRecord, Quarantined, SourceRecord
from indexops.store.edge import EdgeStore
from indexops.store.protocol import StorePoint
from tests.conftest import REPO, write_jsonl
from tests.unit._helpers import assert_store_matches_ledger, settings_for

HOSTILE = REPO / "tests" / "data" / "hostile"
LENIENT = {"validation": {"max_bad_fraction": 1.0}}


def _between_scan_and_read(monkeypatch, action):
    """Run `action(pending_files)` right after the feed is scanned, before any file is read."""
    real = units_mod.scan_delta_feed

    def scan(*a, **kw):
        status = real(*a, **kw)
        action(status.pending)
        return status

    monkeypatch.setattr(units_mod, "scan_delta_feed", scan)


def test_a_file_removed_between_scan_and_read_is_a_clear_rejection_not_a_crash(make_ctx, tmp_path, monkeypatch):
    feed = tmp_path / "feed"
    write_jsonl(feed / "000001.jsonl", [{"id": "a", "text": "first file"}])
    write_jsonl(feed / "000002.jsonl", [{"id": "b", "text": "second file"}])
    ctx = make_ctx()
    _between_scan_and_read(monkeypatch, lambda pending: pending[1].path.unlink())
    with pytest.raises(IngestFailed, match=r"validate_batch on 000002.jsonl.*file '000002.jsonl'.*disappeared before it could be read") as e:
        ingest_path(ctx, feed, "delta")
    assert isinstance(e.value.__cause__, BatchRejected)
    assert ctx.ledger.cursor("feed")["last_file"] == "000001.jsonl"  # the first file landed
    assert [(q["file"], q["line"]) for q in ctx.ledger.list_quarantine()] == [("000002.jsonl", 0)]
    assert_store_matches_ledger(ctx)
    monkeypatch.undo()
    assert ingest_path(ctx, feed, "delta")["counts"]["received"] == 0  # gone for good: nothing pending


def test_a_file_rewritten_between_scan_and_read_waits_for_the_next_run(make_ctx, tmp_path, monkeypatch):
    feed = tmp_path / "feed"
    write_jsonl(feed / "000001.jsonl", [{"id": "a", "text": "as scanned"}])
    ctx = make_ctx()
    _between_scan_and_read(monkeypatch, lambda pending: write_jsonl(pending[0].path, [{"id": "a", "text": "as rewritten"}]))
    with pytest.raises(IngestFailed, match="changed or vanished while it was being read; it will be applied on the next run") as e:
        ingest_path(ctx, feed, "delta")
    assert isinstance(e.value.__cause__, BatchRejected)
    assert ctx.ledger.get_documents(["a"]) == {}
    monkeypatch.undo()
    ingest_path(ctx, feed, "delta")
    assert ctx.ledger.get_documents(["a"])["a"].text == "as rewritten"


def _nest(depth: int) -> dict:
    m: object = "leaf"
    for _ in range(depth):
        m = {"k": m}
    return m  # type: ignore[return-value]


def test_metadata_the_store_could_not_read_back_is_quarantined_and_the_store_reopens(make_ctx, tmp_path):
    """Qdrant reads payloads with a 128-level limit: before the fix one record nested ~125 deep
    was written, and the Edge shard's WAL could never be read again (the collection was lost)."""
    feed = tmp_path / "feed"
    write_jsonl(feed / "000001.jsonl", [{"id": "deep", "text": "deep metadata", "metadata": _nest(130)},
                                        {"id": "edge", "text": "just deep enough", "metadata": _nest(MAX_METADATA_DEPTH)},
                                        {"id": "over", "text": "one level too deep", "metadata": _nest(MAX_METADATA_DEPTH + 1)}])
    shutil.copy(HOSTILE / "nested_metadata.jsonl", feed / "000002.jsonl")
    ctx = make_ctx(settings_for(LENIENT))
    ingest_path(ctx, feed, "delta")
    reasons = {(q["file"], q["line"]): q["reason"] for q in ctx.ledger.list_quarantine()}
    assert reasons[("000001.jsonl", 1)] == "JSON nested deeper than 64 levels"
    assert "metadata is nested deeper than 32 levels" in reasons[("000001.jsonl", 3)]
    assert "holds an integer beyond 64 bits" in reasons[("000002.jsonl", 4)]
    assert {d for d, r in ctx.ledger.get_documents(["edge", "m1"]).items() if r.status == "active"} == {"edge", "m1"}
    ctx.store.close()
    ctx._store = None
    assert_store_matches_ledger(ctx)  # reopened from disk


def test_the_store_refuses_a_payload_it_could_not_read_back(tmp_path):
    s = EdgeStore(tmp_path / "edge", "c", 4)
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        s.upsert([StorePoint("00000000-0000-4000-8000-000000000001", [1.0, 0, 0, 0], ([1], [1.0]), {"m": _nest(200)})])
    s.close()
    s = EdgeStore(tmp_path / "edge", "c", 4)
    assert s.count() == 0
    s.close()


def test_a_half_created_edge_directory_is_set_aside_and_created_again(tmp_path):
    """Edge writes segments before edge_config.json; a process killed in between left a
    directory Edge would neither load nor create ("path already contains segment data")."""
    path = tmp_path / "collections" / "c"
    EdgeStore(path, "c", 4).close()
    (path / "edge_config.json").unlink()  # what a kill mid-creation left behind
    s = EdgeStore(path, "c", 4)
    s.upsert([StorePoint("00000000-0000-4000-8000-000000000001", [1.0, 0, 0, 0], ([1], [1.0]), {"doc_id": "x"})])
    s.close()
    assert EdgeStore(path, "c", 4).count() == 1
    assert [p.name.split("-")[0] for p in path.parent.iterdir() if p.name != "c"] == ["c.incomplete"]


# ---- fuzzing ------------------------------------------------------------------------------------

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
fields = {"id": json_values | st.text(max_size=10), "op": st.sampled_from(["upsert", "delete", "", "x"]) | json_values,
          "title": json_values, "text": json_values | st.text(), "metadata": json_values,
          "updated_at": json_values | st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday"])}
records = st.fixed_dictionaries({}, optional=fields)


def _check(path, n_lines=None):
    try:
        recs, bad = read_batch_file(path, "fuzz")
    except FeedFileError:
        return
    assert all(isinstance(r, SourceRecord) for r in recs) and all(isinstance(q, Quarantined) for q in bad)
    if n_lines is not None:
        assert len(recs) + len(bad) == n_lines


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".jsonl", ".csv", ".parquet"]))
def test_readers_on_random_bytes_raise_nothing_but_feed_file_errors(tmp_path, data, suffix):
    p = tmp_path / f"fuzz{suffix}"
    p.write_bytes(data)
    _check(p)


@FUZZ
@given(lines=st.lists(st.one_of(records.map(lambda r: json.dumps(r)), json_values.map(json.dumps), st.text(max_size=40)), max_size=12),
       newline=st.sampled_from(["\n", "\r\n"]), bom=st.booleans())
@example(lines=["\x1f", "\xa0", " \t"], newline="\n", bom=False)
def test_readers_on_random_jsonl_raise_nothing_and_account_for_every_line(tmp_path, lines, newline, bom):
    lines = [l.replace("\r", " ").replace("\n", " ") for l in lines]  # one record per line
    p = tmp_path / "fuzz.jsonl"
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join(lines).encode("utf-8", "surrogatepass"))
    # Blank means ASCII whitespace only (as in JSON); a line of '\x1f' or U+00A0 is a record to quarantine.
    _check(p, n_lines=sum(1 for l in lines if l.encode("utf-8", "surrogatepass").strip()))


@FUZZ
@given(header=st.lists(st.sampled_from(["id", "title", "text", "metadata", "op", "updated_at", "x"]), min_size=1, max_size=6),
       rows=st.lists(st.lists(st.text(max_size=30) | json_values.map(json.dumps), max_size=7), max_size=8), raw=st.text(max_size=200))
def test_readers_on_random_csv_raise_nothing_but_feed_file_errors(tmp_path, header, rows, raw):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    for i, text in enumerate((buf.getvalue(), ",".join(header) + "\n" + raw)):
        p = tmp_path / f"fuzz{i}.csv"
        p.write_bytes(text.encode("utf-8", "surrogatepass"))
        _check(p)


@settings(max_examples=300, deadline=None)
@given(raw=records)
def test_the_record_model_rejects_only_with_validation_errors(raw):
    """Before the fix a date out of range in UTC escaped as OverflowError and failed the run."""
    try:
        r = FeedRecord.model_validate(raw)
    except ValidationError:
        return
    json.dumps(r.metadata, allow_nan=False)  # what is accepted can be stored as JSON
    assert all(math.isfinite(v) for v in _floats(r.metadata))


def _floats(v):
    if isinstance(v, float):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from _floats(x)
    elif isinstance(v, list):
        for x in v:
            yield from _floats(x)
