"""The keyed-source engine on a source held in memory: fingerprints decide what is fetched, they
commit with the records (a failed unit is fetched again, a committed one never), vanished keys are
deleted, and the delete guard stops a listing that would empty the index."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from indexops.ingest.driver import IngestFailed, ingest_path
from indexops.ingest.keyed import Fetched, Listed, Listing, ListsKeys, TooManyDeletes, diff_listing
from indexops.ingest import units
from indexops.models import SourceRecord
from tests.unit._helpers import assert_store_matches_ledger, doc_ids_in_store, settings_for

pytestmark = pytest.mark.unit


@dataclass
class MemorySource(ListsKeys):
    """key -> text; the fingerprint is the text's version number; records every fetched key."""

    docs: dict[str, tuple[int, str]]
    feed: str = "mem"
    kind: str = "documents"
    fetched: list[str] = field(default_factory=list)
    fail_on: str | None = None

    def list_keys(self, ctx):
        return Listing([Listed(k, f"v{v}") for k, (v, _) in sorted(self.docs.items())])

    def fetch(self, ctx, keys):
        for e in keys:
            if e.key == self.fail_on:
                raise ConnectionError(f"lost the connection while reading {e.key}")
            self.fetched.append(e.key)
            v, text = self.docs[e.key]
            yield Fetched(e.key, f"v{v}", record=SourceRecord(file=e.key, line=1, raw={"id": e.key, "text": text}))


@pytest.fixture
def run(monkeypatch):
    """ingest_path with the memory source in place of what open_source would build."""
    def _run(ctx, src):
        monkeypatch.setattr(units, "open_source", lambda *a, **k: src)
        return ingest_path(ctx, "/nowhere", "documents", feed=src.feed)
    return _run


def _docs(n, version=1):
    return {f"k{i:03d}": (version, f"text of key {i} in version {version}") for i in range(n)}


def test_a_failed_unit_is_fetched_again_and_a_committed_one_never(make_ctx, run):
    ctx = make_ctx(settings_for({"ingest": {"batch_docs": 4}}))
    src = MemorySource(_docs(10), fail_on="k009")  # the third unit (k008, k009) fails while fetching
    with pytest.raises(IngestFailed):
        run(ctx, src)
    assert doc_ids_in_store(ctx) == {f"k{i:03d}" for i in range(8)}
    src.fetched.clear()
    src.fail_on = None
    run(ctx, src)
    assert src.fetched == ["k008", "k009"]
    assert doc_ids_in_store(ctx) == set(_docs(10))
    assert_store_matches_ledger(ctx)


def test_changed_keys_are_fetched_and_vanished_keys_deleted(make_ctx, run):
    ctx = make_ctx(settings_for())
    src = MemorySource(_docs(6))
    run(ctx, src)
    src.fetched.clear()
    src.docs["k002"] = (2, "a new text for key two")
    del src.docs["k005"]
    run(ctx, src)
    assert src.fetched == ["k002"]
    assert doc_ids_in_store(ctx) == set(_docs(6)) - {"k005"}
    texts = {v["doc_id"]: v["text"] for _, v in ctx.store.iter_points(["doc_id", "text"])}
    assert texts["k002"] == "a new text for key two"


def test_the_delete_guard_leaves_the_index_as_it_was(make_ctx, run):
    ctx = make_ctx(settings_for({"source": {"max_delete_fraction": 0.25}}))
    src = MemorySource(_docs(8))
    first = run(ctx, src)["snapshot"]["snapshot_id"]
    src.docs = dict(list(src.docs.items())[:5])  # 3 of 8 gone: 37.5% > 25%
    with pytest.raises(IngestFailed) as err:
        run(ctx, src)
    assert isinstance(err.value.__cause__, TooManyDeletes)
    assert doc_ids_in_store(ctx) == set(_docs(8))
    assert ctx.ledger.latest_snapshot(ctx.collection)["snapshot_id"] == first
    src.docs = dict(list(_docs(8).items())[:6])  # 2 of 8: 25%, allowed
    run(ctx, src)
    assert doc_ids_in_store(ctx) == set(list(_docs(8))[:6])


@pytest.mark.parametrize("known,listed,complete,fetch,delete", [
    ({}, [("a", "1")], True, ["a"], []),
    ({"a": "1"}, [("a", "1")], True, [], []),
    ({"a": "1"}, [("a", "2")], True, ["a"], []),
    ({"a": "1", "b": "1"}, [("a", "1")], True, [], ["b"]),
    ({"a": "1", "b": "1"}, [("a", "1")], False, [], []),  # an incremental listing deletes nothing
    ({"a": "1"}, [("a", None), ("b", None)], True, ["b"], []),  # existence only: fetched when unknown
    ({}, [("a", "1"), ("a", "2")], True, ["a"], []),  # a key listed twice counts once (the first)
])
def test_diff_listing(known, listed, complete, fetch, delete):
    kp = diff_listing(Listing([Listed(k, f) for k, f in listed], complete=complete), known, 1.0, "f")
    assert [e.key for e in kp.changed] == fetch and kp.deleted == delete


def test_diff_listing_guard_counts_against_known_keys():
    known = {k: "1" for k in "abcd"}
    with pytest.raises(TooManyDeletes, match="3 of the 4 indexed keys"):
        diff_listing(Listing([Listed("a", "1")]), known, 0.5, "f")
    assert diff_listing(Listing([Listed("a", "1"), Listed("b", "1")]), known, 0.5, "f").deleted == ["c", "d"]


def test_a_bad_record_is_quarantined_and_its_key_leaves_the_index(make_ctx, run):
    """Validation failures of a keyed source are per key: the unit lands without them (one bad key
    in a unit of two is 50%, far over max_bad_fraction, yet nothing is rejected), and a key that was
    good and turned bad is deleted, as a load of the source as it is now would have it."""
    ctx = make_ctx(settings_for({"validation": {"max_text_chars": 60}}))
    src = MemorySource({"a": (1, "short and fine"), "b": (1, "also short")})
    run(ctx, src)
    src.docs["b"] = (2, "far too long " * 10)
    run(ctx, src)
    assert doc_ids_in_store(ctx) == {"a"}
    bad = ctx.ledger.list_quarantine("mem", None)
    assert [q["record_id"] for q in bad] == ["b"] and "60" in bad[0]["reason"]
    src.fetched.clear()
    run(ctx, src)
    assert src.fetched == []  # its fingerprint was kept: not read again until it changes
    src.docs["b"] = (3, "short again")
    run(ctx, src)
    assert doc_ids_in_store(ctx) == {"a", "b"}


def test_two_sources_holding_the_same_key_leave_each_other_alone(make_ctx, run):
    ctx = make_ctx(settings_for())
    handbook = MemorySource({"index.md": (1, "the handbook's front page"), "leave.md": (1, "leave policy")}, feed="handbook")
    helpcenter = MemorySource({"index.md": (1, "the help centre's front page"), "faq.md": (1, "questions")}, feed="helpcenter")
    run(ctx, handbook)
    run(ctx, helpcenter)
    texts = {v["doc_id"]: v["text"] for _, v in ctx.store.iter_points(["doc_id", "text"])}
    assert texts == {"index.md": "the handbook's front page", "leave.md": "leave policy", "faq.md": "questions"}
    assert "already a document of feed 'handbook'" in ctx.ledger.list_quarantine("helpcenter", None)[0]["reason"]
    del helpcenter.docs["index.md"]  # the key the help centre never owned vanishes from it: handbook's page stays
    run(ctx, helpcenter)
    assert doc_ids_in_store(ctx) == {"index.md", "leave.md", "faq.md"}
