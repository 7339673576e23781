"""The native evaluator of the feed suite gives exactly Great Expectations' answer: the same
rows quarantined, with the same reasons in the same order, on every hostile file and on random
records (hypothesis). GE stays the reference; `validation.engine: auto` may skip importing it."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexops.ingest.readers import FeedFileError, read_batch_file
from indexops.ingest.validate import native_supported, validate_records
from indexops.models import SourceRecord
from tests.conftest import REPO

SUITE = REPO / "configs" / "expectations" / "feed_record.json"
HOSTILE = REPO / "tests" / "data" / "hostile"


def _outcome(res):
    return ([r.id for r in res.good], [(q.line, q.record_id, q.reason) for q in res.bad], res.total)


def _both(records, max_text_chars=2_000_000):
    ge = validate_records(records, "feed", SUITE, max_text_chars, engine="great_expectations")
    native = validate_records(records, "feed", SUITE, max_text_chars, engine="native")
    return _outcome(ge), _outcome(native)


def test_the_shipped_suite_runs_natively():
    assert native_supported(json.loads(SUITE.read_text()))


def _readable(p) -> bool:
    try:
        read_batch_file(p, "feed")
    except FeedFileError:  # rejected whole by the reader: nothing reaches validation
        return False
    return True


READABLE = sorted(p.name for p in HOSTILE.iterdir() if p.suffix in {".jsonl", ".csv", ".parquet"} and _readable(p))


@pytest.mark.parametrize("name", READABLE)
def test_native_equals_great_expectations_on_every_hostile_file(name):
    records, _ = read_batch_file(HOSTILE / name, "feed")
    ge, native = _both(records, max_text_chars=1000)
    assert native == ge


_values = st.one_of(
    st.none(), st.sampled_from(["", "upsert", "delete", "DELETE", "x" * 513, "a", "doc-1", " "]),
    st.text(max_size=8), st.integers(-3, 3), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_record = st.fixed_dictionaries({}, optional={"id": _values, "op": _values, "text": _values, "title": _values})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_record, min_size=1, max_size=12))
def test_native_equals_great_expectations_on_random_records(raws):
    records = [SourceRecord(file="b.jsonl", line=i + 1, raw=r) for i, r in enumerate(raws)]
    ge, native = _both(records)
    assert native == ge


def test_a_suite_with_an_expectation_only_ge_has_falls_back_to_ge(tmp_path):
    spec = json.loads(SUITE.read_text())
    spec["expectations"].append({"type": "expect_column_values_to_match_regex", "kwargs": {"column": "id", "regex": "^[a-z0-9-]+$"}})
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps(spec))
    assert not native_supported(spec)
    recs = [SourceRecord(file="b.jsonl", line=1, raw={"id": "Bad Id!", "text": "t"}), SourceRecord(file="b.jsonl", line=2, raw={"id": "ok-1", "text": "t"})]
    res = validate_records(recs, "feed", suite, 1000, engine="auto")
    assert [q.line for q in res.bad] == [1] and "match_regex" in res.bad[0].reason
    with pytest.raises(ValueError, match="only Great Expectations"):
        validate_records(recs, "feed", suite, 1000, engine="native")
