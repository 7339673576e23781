"""Batch validation (indexops/ingest/validate.py): the Great Expectations suite plus the pydantic record,
per-row quarantine, and whole-batch rejection above validation.max_bad_fraction."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from indexops.ingest.driver import IngestFailed, ingest_path
from indexops.ingest.validate import BatchRejected, ValidationResult, load_suite, validate_records
from indexops.models import SourceRecord
from tests.conftest import REPO, write_jsonl
from tests.unit._helpers import settings_for

SUITE = REPO / "configs" / "expectations" / "feed_record.json"


def _validate(raws, max_text_chars=1000):
    recs = [SourceRecord(file="b.jsonl", line=i + 1, raw=r) for i, r in enumerate(raws)]
    return validate_records(recs, "feed", SUITE, max_text_chars)


@pytest.mark.parametrize(
    "raw, reason",
    [
        ({"text": "no id"}, "expectation failed: expect_column_values_to_not_be_null(id)"),
        ({"id": None, "text": "null id"}, "expect_column_values_to_not_be_null(id)"),
        ({"id": "x" * 513, "text": "long id"}, "expect_column_value_lengths_to_be_between(id, min_value=1, max_value=512)"),
        ({"id": "", "text": "empty id"}, "expect_column_value_lengths_to_be_between(id"),
        ({"id": "  ", "text": "blank id"}, "invalid record: id: String should have at least 1 character"),
        ({"id": True, "text": "bool id"}, "expect_column_values_to_not_be_null(id)"),
        ({"id": 7.5, "text": "float id"}, "expect_column_values_to_not_be_null(id)"),
        ({"id": "b", "op": "merge", "text": "x"}, "expect_column_values_to_be_in_set(op, value_set=upsert|delete)"),
        ({"id": "c", "op": "upsert"}, "text is required and non-empty for an upsert"),
        ({"id": "c", "text": "  \n "}, "text is required and non-empty for an upsert"),
        ({"id": "c", "text": 5}, "text: Input should be a valid string"),
        ({"id": "e", "text": "m", "metadata": [1]}, "metadata must be an object"),
        ({"id": "e", "text": "m", "metadata": {"v": [1.0, float("inf")]}}, "metadata.v[1] holds a non-finite number"),
        ({"id": "f", "text": "t", "updated_at": "yesterday"}, "updated_at"),
        ({"id": "g", "text": "y" * 1001}, "text too long: 1001 chars > 1000"),
        ({"id": "h", "title": 5, "text": "t"}, "title: Input should be a valid string"),
        ({"id": "n", "text": "a\x00b"}, "text or title contains a NUL byte"),
        ({"id": "n", "title": "a\x00b", "text": "t"}, "text or title contains a NUL byte"),
    ],
)
def test_bad_row_is_quarantined_with_reason_file_and_line(raw, reason):
    good = {"id": "ok", "text": "fine"}
    res = _validate([good, raw, good | {"id": "ok2"}])
    assert [g.id for g in res.good] == ["ok", "ok2"]
    assert len(res.bad) == 1 and res.total == 3
    q = res.bad[0]
    assert reason in q.reason
    assert (q.feed, q.file, q.line) == ("feed", "b.jsonl", 2)
    assert len(q.excerpt) <= 200


def test_good_rows_are_parsed():
    res = _validate([
        {"id": 7, "text": "int id"},
        {"id": " padded ", "text": "t", "updated_at": "2024-01-02T03:04:05"},
        {"id": "d", "op": "delete"},
        {"id": "m", "title": None, "text": "t", "metadata": None, "unknown": 1},
        {"id": "z", "text": "t", "updated_at": "2024-01-02T05:04:05+02:00", "metadata": {"a": {"b": [1, "x"]}}},
    ])
    assert res.bad == []
    g = {r.id: r for r in res.good}
    assert list(g) == ["7", "padded", "d", "m", "z"]
    assert g["padded"].updated_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)  # naive -> UTC
    assert g["z"].updated_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert g["z"].updated_at.tzinfo == timezone.utc  # normalised to UTC: SQLite keeps no offset
    assert g["d"].op == "delete" and g["d"].text is None
    assert g["m"].title == "" and g["m"].metadata == {}
    assert g["z"].metadata == {"a": {"b": [1, "x"]}}


def test_null_op_means_the_default_upsert():
    """`op` defaults to upsert; a CSV/Parquet feed with an op column has null cells for upserts,
    and the GE suite already treats null op as upsert, so pydantic must not reject it."""
    res = _validate([{"id": "a", "op": None, "text": "null op"}])
    assert res.bad == []
    assert [(r.id, r.op) for r in res.good] == [("a", "upsert")]


def test_csv_feed_with_blank_op_cells_lands_upserts(make_ctx, tmp_path):
    feed = tmp_path / "csvfeed"
    feed.mkdir()
    (feed / "b-001.csv").write_text("id,op,text\na,,hello there\nb,upsert,general kenobi\n")
    ctx = make_ctx(settings_for({"validation": {"max_bad_fraction": 1.0}}))
    ingest_path(ctx, feed, "delta")
    assert ctx.ledger.list_quarantine() == []
    assert {d: r.status for d, r in ctx.ledger.get_documents(["a", "b"]).items()} == {"a": "active", "b": "active"}


def test_empty_batch_is_valid():
    res = _validate([])
    assert (res.good, res.bad, res.total, res.bad_fraction) == ([], [], 0, 0.0)


def test_missing_suite_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Great Expectations suite not found"):
        load_suite(tmp_path / "nope.json")


def test_batch_rejected_message_names_feed_file_and_top_reasons():
    res = _validate([{"id": "a", "op": "merge", "text": "x"}, {"id": "b", "op": "merge", "text": "x"}, {"id": "c"}, {"id": "d", "text": "ok"}])
    e = BatchRejected("news", "b-007.jsonl", res, 0.05)
    msg = str(e)
    assert "feed 'news', file 'b-007.jsonl'" in msg
    assert "3 of 4 records invalid (75.0% > threshold 5.0%)" in msg
    assert "expect_column_values_to_be_in_set(op, value_set=upsert|delete) (2)" in msg
    assert "text is required and non-empty for an upsert (1)" in msg
    assert msg.index("value_set") < msg.index("text is required")  # most frequent first
    assert ValidationResult(total=0).bad_fraction == 0.0


# ---- the threshold at batch level, through ingest ------------------------------------------------


def _rows(n_good, n_bad, prefix="d"):
    rows = [{"id": f"{prefix}{i:02d}", "text": f"{prefix} document number {i} about topic {i}"} for i in range(n_good)]
    rows += [{"id": f"bad{i}", "op": "merge", "text": "x"} for i in range(n_bad)]
    return rows


def test_bad_share_at_threshold_lands_good_rows_and_quarantines_bad(make_ctx, tmp_path):
    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", _rows(19, 1))  # 1/20 = 5% = threshold: accepted
    ctx = make_ctx()
    out = ingest_path(ctx, feed, "delta")
    assert out["counts"]["upserted"] == 19 and out["counts"]["quarantined"] == 1
    q = ctx.ledger.list_quarantine("news")
    assert [(r["file"], r["line"], r["record_id"]) for r in q] == [("b-001.jsonl", 20, "bad0")]
    assert "expect_column_values_to_be_in_set(op" in q[0]["reason"]
    assert ctx.ledger.cursor("news")["last_file"] == "b-001.jsonl"


def test_bad_share_above_threshold_rejects_batch_then_corrected_file_applies(make_ctx, tmp_path):
    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", _rows(5, 0, prefix="first"))
    ctx = make_ctx()
    ingest_path(ctx, feed, "delta")
    sid = ctx.ledger.state(ctx.collection)["acc"]
    write_jsonl(feed / "b-002.jsonl", _rows(18, 2))  # 2/20 = 10% > 5%
    write_jsonl(feed / "b-003.jsonl", _rows(3, 0, prefix="later"))
    with pytest.raises(IngestFailed, match="failed in task validate_batch on b-002.jsonl") as e:
        ingest_path(ctx, feed, "delta")
    assert isinstance(e.value.__cause__, BatchRejected)
    msg = str(e.value.__cause__)
    assert "feed 'news'" in msg and "'b-002.jsonl'" in msg and "2 of 20 records invalid" in msg
    assert "expect_column_values_to_be_in_set(op, value_set=upsert|delete) (2)" in msg
    # nothing of it landed, the cursor did not move, later files were not applied either
    assert not ctx.ledger.get_documents([f"d{i:02d}" for i in range(18)])
    assert ctx.ledger.cursor("news")["last_file"] == "b-001.jsonl"
    assert set(ctx.ledger.applied_files("news")) == {"b-001.jsonl"}
    assert ctx.ledger.state(ctx.collection)["acc"] == sid
    assert {(r["file"], r["line"]) for r in ctx.ledger.list_quarantine("news")} == {("b-002.jsonl", 19), ("b-002.jsonl", 20)}
    # the producer fixes the file: it is applied on the next run, followed by b-003
    write_jsonl(feed / "b-002.jsonl", _rows(18, 0))
    out = ingest_path(ctx, feed, "delta")
    assert out["counts"]["upserted"] == 21
    assert ctx.ledger.cursor("news")["last_file"] == "b-003.jsonl"
    assert set(ctx.ledger.applied_files("news")) == {"b-001.jsonl", "b-002.jsonl", "b-003.jsonl"}
    assert len(ctx.ledger.active_doc_ids("news")) == 5 + 18 + 3


def test_custom_threshold_is_used(make_ctx, tmp_path):
    feed = tmp_path / "news"
    write_jsonl(feed / "b-001.jsonl", _rows(1, 1))  # 50%
    ctx = make_ctx(settings_for({"validation": {"max_bad_fraction": 0.5}}))
    assert ingest_path(ctx, feed, "delta")["counts"]["upserted"] == 1
    write_jsonl(feed / "b-002.jsonl", _rows(0, 1, prefix="x"))  # 100%
    with pytest.raises(IngestFailed, match="threshold 50.0%") as e:
        ingest_path(ctx, feed, "delta")
    assert isinstance(e.value.__cause__, BatchRejected)
