"""Feed readers against hostile inputs (tests/data/hostile/): every bad line becomes a quarantine
row with reason, file and line, a file-level problem is a FeedFileError with a clear message, and
the good lines of the same file still parse and land."""

from __future__ import annotations

import shutil

import pytest

from indexops.ingest.driver import IngestFailed, ingest_path
from indexops.ingest.readers import FeedFileError, is_batch_file, read_batch_file
from indexops.ingest.sources import scan_delta_feed
from indexops.ingest.validate import BatchRejected
from tests.conftest import REPO
from tests.unit._helpers import settings_for

HOSTILE = REPO / "tests" / "data" / "hostile"


def _read(name):
    recs, bad = read_batch_file(HOSTILE / name, "feed")
    return [r.raw.get("id") for r in recs], [r.line for r in recs], {q.line: q for q in bad}


@pytest.mark.parametrize(
    "name, good_ids, good_lines, bad",
    [
        ("malformed.jsonl", ["g1", "g2"], [1, 3], {2: "malformed JSON"}),
        ("bom.jsonl", ["b1", "b2"], [1, 2], {}),
        ("crlf.jsonl", ["c1", "c2"], [1, 2], {}),
        ("invalid_utf8.jsonl", ["u1", "u3"], [1, 3], {2: "invalid UTF-8 at byte 26"}),
        ("nul.jsonl", ["n1", "n3", "n4", "n5\x00"], [1, 3, 4, 5], {2: "malformed JSON: Invalid control character"}),
        ("non_object.jsonl", ["o1"], [5], {1: "got list", 2: "got str", 3: "got int", 4: "got NoneType"}),
        ("nan.jsonl", ["f1"], [3], {1: "non-standard JSON constant NaN", 2: "non-standard JSON constant Infinity"}),
        ("blank_lines.jsonl", ["k1"], [3], {}),
        ("empty.jsonl", [], [], {}),
        ("rows.csv", ["r1", "r4"], [2, 6], {3: "more fields than the header", 4: "metadata is not JSON"}),
        ("invalid_utf8.csv", ["v1", "v3"], [2, 4], {3: "invalid UTF-8"}),
        ("good.parquet", ["p1", "p2"], [1, 2], {}),
        ("float_id.parquet", [1.5, None], [1, 2], {}),
    ],
)
def test_hostile_lines_are_quarantined_and_good_lines_parse(name, good_ids, good_lines, bad):
    ids, lines, quarantined = _read(name)
    assert ids == good_ids
    assert lines == good_lines
    assert set(quarantined) == set(bad)
    for line, reason in bad.items():
        q = quarantined[line]
        assert reason in q.reason
        assert q.file == name and q.feed == "feed"
        assert len(q.excerpt) <= 200


def test_bom_is_not_part_of_the_first_key():
    recs, _ = read_batch_file(HOSTILE / "bom.jsonl", "feed")
    assert list(recs[0].raw) == ["id", "text"]


def test_crlf_does_not_leak_into_values():
    recs, _ = read_batch_file(HOSTILE / "crlf.jsonl", "feed")
    assert [r.raw["text"] for r in recs] == ["one", "two"]


def test_csv_values_are_typed():
    recs, _ = read_batch_file(HOSTILE / "rows.csv", "feed")
    assert recs[0].raw["metadata"] == {"k": 1}  # metadata column parsed as JSON
    assert recs[1].raw["metadata"] is None  # empty cell -> null
    assert recs[1].raw["text"] == "multi\nline"


def test_parquet_metadata_string_is_parsed():
    recs, _ = read_batch_file(HOSTILE / "good.parquet", "feed")
    assert recs[0].raw["metadata"] == {"k": 1}
    assert recs[1].raw["metadata"] == "not json"  # left for validation to reject


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_id.csv", "CSV batch 'no_id.csv' has no 'id' column (columns: ['title', 'text'])"),
        ("wrong_schema.parquet", "Parquet batch 'wrong_schema.parquet' has no 'id' column (schema: doc, body)"),
        ("corrupt.parquet", "Parquet batch 'corrupt.parquet' cannot be read"),
    ],
)
def test_unusable_file_is_a_feed_file_error(name, message):
    with pytest.raises(FeedFileError) as e:
        read_batch_file(HOSTILE / name, "feed")
    assert message in str(e.value)
    # no chained low-level traceback: raised fresh or `from None`
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(FeedFileError, match="disappeared"):
        read_batch_file(tmp_path / "gone.jsonl", "feed")
    (tmp_path / "x.txt").write_text("{}")
    with pytest.raises(FeedFileError, match="unsupported batch file type '.txt'"):
        read_batch_file(tmp_path / "x.txt", "feed")


def test_oversized_line_is_quarantined_unparsed(tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_text('{"id": "a", "text": "' + "x" * 100 + '"}\n{"id": "b", "text": "ok"}\n')
    recs, bad = read_batch_file(p, "feed", max_line_bytes=50)
    assert [r.raw["id"] for r in recs] == ["b"]
    assert bad[0].line == 1 and "longer than 50 bytes" in bad[0].reason


def test_batch_file_filter(tmp_path):
    for n in ["a.jsonl", "b.JSONL", "c.csv", "d.parquet", "e.ndjson", ".hidden.jsonl", "~lock.jsonl", "f.jsonl.tmp", "g.jsonl.part", "h.txt"]:
        (tmp_path / n).write_text("")
    (tmp_path / "dir.jsonl").mkdir()
    assert sorted(p.name for p in tmp_path.iterdir() if is_batch_file(p)) == ["a.jsonl", "b.JSONL", "c.csv", "d.parquet", "e.ndjson"]


# ---- through validation and the pipeline -------------------------------------------------------


def _feed_with(tmp_path, *names):
    feed = tmp_path / "hostile"
    feed.mkdir()
    for n in names:
        shutil.copy(HOSTILE / n, feed / n)
    return feed


LENIENT = {"validation": {"max_bad_fraction": 1.0}}


def test_hostile_jsonl_feed_lands_good_lines_and_quarantines_the_rest(make_ctx, tmp_path):
    names = ["malformed.jsonl", "bom.jsonl", "crlf.jsonl", "invalid_utf8.jsonl", "non_object.jsonl", "nan.jsonl",
             "blank_lines.jsonl", "empty.jsonl", "rows.csv", "invalid_utf8.csv", "good.parquet", "float_id.parquet"]
    ctx = make_ctx(settings_for(LENIENT))
    out = ingest_path(ctx, _feed_with(tmp_path, *names), "delta")
    live = {d for d, r in ctx.ledger.get_documents(["g1", "g2", "b1", "b2", "c1", "c2", "u1", "u3", "o1", "f1", "k1", "r1", "r4", "v1", "v3", "p1", "p2"]).items() if r.status in ("active", "duplicate")}
    # p2's metadata is the string "not json": quarantined by validation (p1 is an exact duplicate of c1)
    assert live == {"g1", "g2", "b1", "b2", "c1", "c2", "u1", "u3", "o1", "f1", "k1", "r1", "r4", "v1", "v3", "p1"}
    q = {(r["file"], r["line"]) for r in ctx.ledger.list_quarantine("hostile")}
    assert q == {
        ("malformed.jsonl", 2), ("invalid_utf8.jsonl", 2), ("non_object.jsonl", 1), ("non_object.jsonl", 2),
        ("non_object.jsonl", 3), ("non_object.jsonl", 4), ("nan.jsonl", 1), ("nan.jsonl", 2), ("rows.csv", 3),
        ("rows.csv", 4), ("invalid_utf8.csv", 3), ("good.parquet", 2), ("float_id.parquet", 1), ("float_id.parquet", 2),
    }
    assert out["counts"]["quarantined"] == len(q)
    assert all(r["reason"] for r in ctx.ledger.list_quarantine())
    assert set(ctx.ledger.applied_files("hostile")) == set(names)


def test_nul_bytes_are_quarantined(make_ctx, tmp_path):
    ctx = make_ctx(settings_for(LENIENT))
    ingest_path(ctx, _feed_with(tmp_path, "nul.jsonl"), "delta")
    q = {r["line"]: r["reason"] for r in ctx.ledger.list_quarantine()}
    assert "malformed JSON" in q[2]
    assert "contains a NUL byte" in q[3] and "contains a NUL byte" in q[4]
    assert "id contains a NUL byte" in q[5]
    assert ctx.ledger.get_documents(["n1"])["n1"].status == "active"


def test_lone_surrogate_is_quarantined_not_a_crash(make_ctx, tmp_path):
    """JSON allows the escape "\\ud800"; the result is not encodable text and must be quarantined."""
    ctx = make_ctx(settings_for(LENIENT))
    ingest_path(ctx, _feed_with(tmp_path, "surrogate.jsonl"), "delta")
    assert ctx.ledger.get_documents(["s1"])["s1"].status == "active"
    assert [r["line"] for r in ctx.ledger.list_quarantine()] == [2]


@pytest.mark.parametrize("name, message", [("no_id.csv", "no 'id' column"), ("wrong_schema.parquet", "no 'id' column"), ("corrupt.parquet", "cannot be read")])
def test_unusable_file_in_a_feed_rejects_that_batch_with_a_clear_message(make_ctx, tmp_path, name, message):
    ctx = make_ctx(settings_for(LENIENT))
    feed = _feed_with(tmp_path, name)
    with pytest.raises(IngestFailed) as e:
        ingest_path(ctx, feed, "delta")
    assert isinstance(e.value.__cause__, BatchRejected)
    msg = str(e.value.__cause__)
    assert "feed 'hostile'" in msg and f"file {name!r}" in msg and message in msg
    assert ctx.ledger.cursor("hostile") is None
    assert ctx.ledger.applied_files("hostile") == {}
    rows = ctx.ledger.list_quarantine()
    assert [(r["file"], r["line"]) for r in rows] == [(name, 0)] and message in rows[0]["reason"]
    assert [p.name for p in scan_delta_feed(feed, ctx.ledger, "hostile").pending] == [name]  # retried next run
