"""The ledger (indexops/ledger/) behaves identically on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone

import pytest

from indexops.ledger import BatchCommit, ChunkRow, DocWrite, Ledger, LedgerBusy, multiset_term
from indexops.ledger.rows import _MOD
from indexops.models import Quarantined


@pytest.fixture
def ledger(ledger_url):
    led = Ledger(ledger_url)
    led.ensure_state("col", {"recipe": 1})
    yield led
    led.close()


T1 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _doc(doc_id, status="active", text="t", th="h", **kw):
    return DocWrite(doc_id=doc_id, feed=kw.pop("feed", "f"), status=status, title=kw.pop("title", ""), text=text,
                    metadata=kw.pop("metadata", {}), updated_at=kw.pop("updated_at", T1), version_hash=kw.pop("vh", "v-" + doc_id),
                    text_hash=th, **kw)


def _commit(ledger, docs=(), chunks=(), **kw):
    b = BatchCommit(collection="col", feed=kw.pop("feed", "f"), run_id="run", docs=list(docs), chunk_inserts=list(chunks), **kw)
    ledger.commit_batch(b)
    return b


def _chunk(cid, doc_id, h="ch"):
    return ChunkRow(cid, doc_id, 0, h, "eh", f"00000000-0000-0000-0000-{cid[-12:]:0>12}", 3)


def test_documents_round_trip(ledger):
    _commit(ledger, [
        _doc("a", title="Tïtle ✓", metadata={"k": [1, "ü"], "n": None}, minhash=b"\x00\x01\xff", buckets=[11, (1 << 63) - 1]),
        _doc("b", status="duplicate", duplicate_of="a", dup_kind="exact", similarity=1.0),
    ])
    got = ledger.get_documents(["a", "b", "missing"])
    assert set(got) == {"a", "b"}
    a = got["a"]
    assert (a.status, a.title, a.text, a.metadata, a.minhash, a.version) == ("active", "Tïtle ✓", "t", {"k": [1, "ü"], "n": None}, b"\x00\x01\xff", 1)
    assert a.updated_at == T1 and a.updated_at.tzinfo is not None
    assert (got["b"].duplicate_of, got["b"].dup_kind) == ("a", "exact")
    assert ledger.list_duplicates() == [{"doc_id": "b", "duplicate_of": "a", "dup_kind": "exact", "similarity": 1.0}]
    assert ledger.lsh_candidates([11, 99, (1 << 63) - 1]) == {11: {"a"}, (1 << 63) - 1: {"a"}}
    assert ledger.duplicates_of(["a"])[0].doc_id == "b"
    assert ledger.document_counts() == {"active": 1, "duplicate": 1}
    assert ledger.doc_versions() == {"a": "v-a"}


def test_non_utc_offsets_keep_their_instant(ledger):
    plus2 = timezone(timedelta(hours=2))
    _commit(ledger, [_doc("a", updated_at=datetime(2024, 1, 2, 5, 0, tzinfo=plus2))])
    assert ledger.get_documents(["a"])["a"].updated_at == datetime(2024, 1, 2, 3, 0, tzinfo=timezone.utc)


def test_active_by_text_hash_and_active_ids(ledger):
    _commit(ledger, [_doc("a", th="h1"), _doc("b", th="h2", feed="g"), _doc("c", status="duplicate", th="h1"), _doc("d", status="deleted", th=None, text=None)])
    assert ledger.active_by_text_hash(["h1", "h2", "h3"]) == {"h1": ["a"], "h2": ["b"]}
    assert ledger.active_doc_ids() == {"a", "b", "c"}
    assert ledger.active_doc_ids("g") == {"b"}
    assert [d.doc_id for rows in ledger.iter_active_documents(batch=1) for d in rows] == ["a", "b"]


def test_replacing_a_document_replaces_its_buckets(ledger):
    _commit(ledger, [_doc("a", buckets=[11])])
    _commit(ledger, [_doc("a", status="duplicate", duplicate_of="z", buckets=[11], version=2)])
    assert ledger.lsh_candidates([11]) == {}  # only active documents are in LSH buckets
    assert ledger.get_documents(["a"])["a"].version == 2


def test_band_rows_a_document_left_behind_are_never_candidates_and_maintenance_prunes_them(ledger):
    """A commit deletes no LSH row (a delta would write a random page of the large table for each):
    rows under bands a document no longer has, or of a document that left, are dropped by
    `lsh_candidates`, survive a fold only while their document is active, and `prune_lsh` deletes them."""
    _commit(ledger, [_doc("a", buckets=[11, 12]), _doc("b", buckets=[12, 13]), _doc("c", buckets=[14])])
    _commit(ledger, [_doc("a", buckets=[12, 15], version=2), _doc("c", status="deleted", text=None, th=None, version=2)])
    want = {12: {"a", "b"}, 13: {"b"}, 15: {"a"}}
    assert ledger.lsh_candidates([11, 12, 13, 14, 15]) == want
    assert ledger.lsh_rows() == {"lsh_bands": 0, "lsh_recent": 6}  # 5 rows, then a's new 15; none deleted
    assert ledger.fold_lsh() == 5  # c left: its row is not carried into the large table
    assert ledger.lsh_rows() == {"lsh_bands": 5, "lsh_recent": 0}
    assert ledger.lsh_candidates([11, 12, 13, 14, 15]) == want
    _commit(ledger, [_doc("b", buckets=[16], version=2)])  # in the small tier now; b's old rows in the large one
    assert ledger.prune_lsh(page=2) == 3  # a's 11, b's 12 and 13; walked two rows at a time
    assert ledger.lsh_rows() == {"lsh_bands": 3, "lsh_recent": 0}  # a: 12, 15; b: 16 (folded first)
    assert ledger.lsh_candidates([11, 12, 13, 14, 15, 16]) == {12: {"a"}, 15: {"a"}, 16: {"b"}}
    assert ledger.prune_lsh() == 0


def test_the_small_lsh_tier_folds_on_its_own(ledger, monkeypatch):
    """Rows go to `lsh_recent`; once it holds 1/8 of `lsh_bands` (and at least the minimum), or a
    batch wrote most of it, the commit folds it into `lsh_bands`; a re-added row is not doubled."""
    import indexops.ledger.schema as L

    monkeypatch.setattr(L, "LSH_FOLD_MIN_ROWS", 4)
    _commit(ledger, [_doc(f"d{i}", buckets=[100 + i]) for i in range(8)])  # a bulk batch: folds at once
    assert ledger.lsh_rows() == {"lsh_bands": 8, "lsh_recent": 0}
    _commit(ledger, [_doc("e0", buckets=[200])])
    _commit(ledger, [_doc("e1", buckets=[201]), _doc("e2", buckets=[202])])  # 3 of 8: stays small
    assert ledger.lsh_rows() == {"lsh_bands": 8, "lsh_recent": 3}
    _commit(ledger, [_doc("d0", buckets=[100], version=2)])  # 4 rows now, over 1/8 of lsh_bands: folded
    assert ledger.lsh_rows() == {"lsh_bands": 11, "lsh_recent": 0}  # d0's band, in both tiers, lands once
    assert ledger.lsh_candidates([100, 200, 201, 202]) == {100: {"d0"}, 200: {"e0"}, 201: {"e1"}, 202: {"e2"}}


def test_chunks_and_running_sum(ledger):
    c1, c2, c3 = _chunk("c1", "a", "h1"), _chunk("c2", "a", "h2"), _chunk("c3", "b", "h3")
    t = {c.chunk_id: multiset_term(c.chunk_id, c.chunk_hash) for c in (c1, c2, c3)}
    _commit(ledger, [_doc("a"), _doc("b")], [c1, c2, c3], acc_delta=sum(t.values()), chunk_count_delta=3)
    assert ledger.state("col")["acc"] == sum(t.values()) % _MOD and ledger.state("col")["chunks"] == 3
    assert {d: sorted(r.chunk_id for r in rows) for d, rows in ledger.chunks_for_docs("col", ["a", "b"]).items()} == {"a": ["c1", "c2"], "b": ["c3"]}
    assert ledger.chunks_for_docs("other", ["a"]) == {}
    # delete c1, change c2's hash: the sum is kept mod 2^256 even when the delta is negative
    new2 = multiset_term("c2", "h2b")
    _commit(ledger, chunk_deletes=["c1"], chunk_hash_updates=[("c2", "h2b")], acc_delta=new2 - t["c1"] - t["c2"], chunk_count_delta=-1)
    rows = [r for part in ledger.iter_chunks("col", batch=1) for r in part]
    assert [(r.chunk_id, r.chunk_hash) for r in rows] == [("c2", "h2b"), ("c3", "h3")]
    assert ledger.state("col")["acc"] == (new2 + t["c3"]) % _MOD
    # negative acc delta that underflows wraps mod 2^256
    _commit(ledger, chunk_deletes=["c2", "c3"], acc_delta=-(new2 + t["c3"]) - _MOD, chunk_count_delta=-2)
    assert ledger.state("col")["acc"] == 0 and ledger.state("col")["chunks"] == 0


def test_applied_file_moves_cursor_once_and_atomically(ledger):
    _commit(ledger, [_doc("a")], feed="news", applied_file=("b-001.jsonl", "hash1", 1))
    assert ledger.cursor("news")["last_file"] == "b-001.jsonl"
    assert ledger.cursor("news")["updated_at"].tzinfo is not None
    assert ledger.applied_files("news") == {"b-001.jsonl": "hash1"}
    _commit(ledger, [_doc("b")], feed="news", applied_file=("b-002.jsonl", "hash2", 1))
    assert ledger.cursor("news")["last_file"] == "b-002.jsonl"
    with pytest.raises(RuntimeError, match="'b-001.jsonl' of feed 'news' was already applied"):
        _commit(ledger, [_doc("c")], feed="news", applied_file=("b-001.jsonl", "hash1", 1))
    assert ledger.get_documents(["c"]) == {}  # nothing of the refused batch landed
    assert ledger.cursor("news")["last_file"] == "b-002.jsonl"
    assert set(ledger.all_cursors()) == {"news"}
    assert ledger.cursor("other") is None


def test_quarantine_rows(ledger):
    qs = [Quarantined(feed="news", file="b.jsonl", line=3, record_id="x", reason="bad op", excerpt='{"id": "x"}'),
          Quarantined(feed="other", file="c.csv", line=0, reason="file error")]
    ledger.record_quarantine(qs, "run1")
    _commit(ledger, [_doc("a")], feed="news", quarantined=[Quarantined(feed="news", file="d.jsonl", line=9, reason="r")])
    rows = ledger.list_quarantine("news")
    assert [(r["file"], r["line"], r["record_id"], r["reason"]) for r in rows] == [("b.jsonl", 3, "x", "bad op"), ("d.jsonl", 9, None, "r")]
    assert len(ledger.list_quarantine()) == 3 and len(ledger.list_quarantine(limit=1)) == 1


@pytest.mark.parametrize(
    "record_id, excerpt",
    [("x" * 600, '{"id": "xxx"}'), ("a", '{"id": "a\x00b"}')],
    ids=["record-id-longer-than-512", "nul-in-excerpt"],
)
def test_quarantine_keeps_hostile_values(ledger, record_id, excerpt):
    """A quarantined line is hostile by definition (the validator quarantines ids longer than 512
    chars; the JSONL reader's excerpt of a line with a raw NUL byte holds that NUL). Recording it
    must work the same on every back end, not fail the run on PostgreSQL only."""
    q = Quarantined(feed="news", file="b.jsonl", line=1, record_id=record_id, reason="hostile", excerpt=excerpt)
    ledger.record_quarantine([q], "run")
    (row,) = ledger.list_quarantine()
    assert row["reason"] == "hostile" and row["record_id"][:1] == record_id[:1]


def test_snapshots_and_history(ledger):
    _commit(ledger, [_doc("a", vh="a1"), _doc("b", vh="b1")])
    v1 = ledger.ledger_version()
    m = {"documents": 2, "chunks": 0, "ledger_version": v1}
    assert ledger.record_snapshot("col", "abc111", "r1", m) is True
    assert ledger.record_snapshot("col", "abc111", "r1", m) is False  # same as latest: no new row
    _commit(ledger, [_doc("a", vh="a2"), _doc("b", status="deleted", text=None, vh=None), _doc("c", vh="c1")])
    v2 = ledger.ledger_version()
    assert v2 == v1 + 1
    assert ledger.record_snapshot("col", "abc222", "r2", {"documents": 2, "chunks": 0, "ledger_version": v2, "parent": "abc111"}) is True
    assert ledger.doc_versions_at(v1) == {"a": "a1", "b": "b1"}
    assert ledger.doc_versions_at(v2) == {"a": "a2", "c": "c1"}
    assert ledger.get_snapshot("abc2")["snapshot_id"] == "abc222"
    assert ledger.get_snapshot("abc222")["parent"] == "abc111"
    assert ledger.get_snapshot("fff") is None
    with pytest.raises(ValueError, match="ambiguous"):
        ledger.get_snapshot("abc")
    assert [s["snapshot_id"] for s in ledger.list_snapshots()] == ["abc111", "abc222"]
    assert ledger.latest_snapshot("col")["snapshot_id"] == "abc222"
    assert ledger.state("col")["snapshot_id"] == "abc222"


def test_unchanged_rewrite_keeps_history_open(ledger):
    _commit(ledger, [_doc("a", vh="a1")])
    v1 = ledger.ledger_version()
    _commit(ledger, [_doc("a", vh="a1", version=2)])  # same version hash: no new history row
    _commit(ledger, [_doc("z", vh="z1")])
    assert ledger.doc_versions_at(v1) == {"a": "a1"}
    assert ledger.doc_versions_at(ledger.ledger_version()) == {"a": "a1", "z": "z1"}


def test_runs(ledger):
    ledger.start_run("r1", "news", "/feeds/news")
    ledger.finish_run("r1", "completed", {"upserted": 3}, snapshot_id="s1")
    (r,) = ledger.list_runs()
    assert (r["run_id"], r["status"], r["counts"], r["snapshot_id"], r["error"]) == ("r1", "completed", {"upserted": 3}, "s1", None)
    assert r["finished_at"] >= r["started_at"]


def test_a_run_left_running_by_a_killed_process_is_marked_crashed_by_the_next(ledger):
    ledger.start_run("killed", "news", "/feeds/news")  # SIGKILL: finish_run never happens
    ledger.start_run("other-feed", "blog", "/feeds/blog")
    ledger.start_run("next", "news", "/feeds/news")
    runs = {r["run_id"]: r for r in ledger.list_runs()}
    assert runs["killed"]["status"] == "crashed" and "found by run next" in runs["killed"]["error"]
    assert runs["killed"]["finished_at"] is not None
    assert runs["other-feed"]["status"] == runs["next"]["status"] == "running"


def test_index_lock(ledger):
    owner = ledger.acquire_lock("col")
    with pytest.raises(LedgerBusy, match="is being ingested by"):
        ledger.acquire_lock("col", wait_s=0)
    other = ledger.acquire_lock("other-index")  # locks are per index
    ledger.release_lock("col", owner)
    again = ledger.acquire_lock("col")
    assert again != owner
    ledger.release_lock("col", again)
    ledger.release_lock("other-index", other)


def test_lock_of_a_dead_process_is_taken_over(ledger):
    from sqlalchemy import insert

    from indexops.ledger import locks, utcnow

    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    assert not os.path.exists(f"/proc/{dead_pid}")
    with ledger.engine.begin() as c:
        c.execute(insert(locks).values(name="col", owner=f"{socket.gethostname()}:{dead_pid}:0", acquired_at=utcnow()))
    owner = ledger.acquire_lock("col")
    assert owner.split(":")[1] == str(os.getpid())
    ledger.release_lock("col", owner)


def test_missing_state_is_none(ledger):
    assert ledger.state("nope") is None
    ledger.ensure_state("col", {"recipe": 2})  # idempotent: the first recipe stays
    assert ledger.state("col")["recipe"] == {"recipe": 1}


def test_for_workspace_defaults_to_sqlite_file(tmp_path):
    led = Ledger.for_workspace(tmp_path / "ws")
    try:
        assert led.url == f"sqlite:///{(tmp_path / 'ws').resolve() / 'ledger.db'}"
        assert (tmp_path / "ws" / "ledger.db").exists()
    finally:
        led.close()


def test_an_older_ledgers_hex_lsh_buckets_are_converted_on_open(ledger_url):
    """Ledgers written before the integer band keys kept 40-hex-digit keys in `lsh_buckets`: the
    next open moves them into `lsh_bands` under the keys today's dedupe computes, and drops the old table."""
    import hashlib

    from sqlalchemy import create_engine, inspect, text

    from indexops.ingest.dedupe import band_key

    digests = [hashlib.sha1(f"band-{i}".encode()).digest() for i in range(3)]
    Ledger(ledger_url).close()  # today's schema, then the old table beside it
    engine = create_engine(ledger_url)
    with engine.begin() as c:
        for i in range(2):  # their documents, written before `documents.bands` (NULL: their rows are exact)
            c.execute(text("INSERT INTO documents (doc_id, feed, status, title, metadata_json, version, changed_at) "
                           "VALUES (:d, 'f', 'active', '', '{}', 1, :t)"), {"d": f"doc-{i}", "t": T1})
        c.execute(text("CREATE TABLE lsh_buckets (bucket VARCHAR(40) NOT NULL, doc_id VARCHAR(512) NOT NULL, PRIMARY KEY (bucket, doc_id))"))
        for i, d in enumerate(digests):
            c.execute(text("INSERT INTO lsh_buckets VALUES (:b, :d)"), {"b": d.hex(), "d": f"doc-{i % 2}"})
    led = Ledger(ledger_url)
    try:
        keys = [band_key(d) for d in digests]
        assert led.lsh_candidates(keys + [12345]) == {keys[0]: {"doc-0"}, keys[1]: {"doc-1"}, keys[2]: {"doc-0"}}
        assert not inspect(engine).has_table("lsh_buckets")
    finally:
        led.close()
    Ledger(ledger_url).close()  # a second open finds nothing to convert
    engine.dispose()


def test_document_counts_follow_every_commit_and_older_ledgers_are_counted_on_open(ledger_url):
    """The per-status counts a snapshot reports are kept by each commit (no scan of the documents);
    they always equal a GROUP BY over the documents, also for a ledger written before they existed."""
    from sqlalchemy import create_engine, delete, func, select

    from indexops.ledger import doc_counts, documents

    def grouped(led):
        with led.engine.connect() as c:
            return {s: n for s, n in c.execute(select(documents.c.status, func.count()).group_by(documents.c.status))}

    led = Ledger(ledger_url)
    try:
        led.ensure_state("col", {"recipe": 1})
        _commit(led, [_doc("a"), _doc("b"), _doc("c", status="duplicate", duplicate_of="a")])
        _commit(led, [_doc("a", status="deleted", text=None, th=None, version=2), _doc("c", version=2), _doc("d")])
        _commit(led, [_doc("b", status="deleted", text=None, th=None, version=2)])
        assert led.document_counts() == grouped(led) == {"active": 2, "deleted": 2}
    finally:
        led.close()
    engine = create_engine(ledger_url)
    with engine.begin() as c:
        c.execute(delete(doc_counts))  # as a ledger from before the counts
    engine.dispose()
    led = Ledger(ledger_url)
    try:
        assert led.document_counts() == {"active": 2, "deleted": 2}
    finally:
        led.close()


def test_an_older_ledger_gains_the_applied_file_stat_columns_and_its_files_are_hashed(ledger_url):
    """Ledgers written before `file_size` / `file_mtime_ns` get the columns on open; their rows keep
    NULL, which no stat equals, so the scan hashes those files as it always did."""
    from sqlalchemy import create_engine, inspect, text

    Ledger(ledger_url).close()
    engine = create_engine(ledger_url)
    with engine.begin() as c:  # back to the old table: no stat columns
        c.execute(text("DROP TABLE applied_files"))
        c.execute(text("CREATE TABLE applied_files (feed VARCHAR(512) NOT NULL, file_name VARCHAR(1024) NOT NULL, "
                       "file_hash VARCHAR(64) NOT NULL, records INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL, "
                       "run_id VARCHAR(64), PRIMARY KEY (feed, file_name))"))
        c.execute(text("INSERT INTO applied_files VALUES ('news', 'b-001.jsonl', 'h1', 3, CURRENT_TIMESTAMP, 'r')"))
    led = Ledger(ledger_url)
    try:
        cols = {col["name"] for col in inspect(engine).get_columns("applied_files")}
        assert {"file_size", "file_mtime_ns"} <= cols
        old = led.applied_file_records("news")["b-001.jsonl"]
        assert (old.sha256, old.records, old.size, old.mtime_ns) == ("h1", 3, None, None)
        _commit(led, [_doc("a")], feed="news", applied_file=("b-002.jsonl", "h2", 1, 10, 2**62))
        new = led.applied_file_records("news")["b-002.jsonl"]
        assert (new.size, new.mtime_ns) == (10, 2**62)  # nanosecond mtimes need 64 bits
    finally:
        led.close()
    Ledger(ledger_url).close()  # a second open adds nothing
    engine.dispose()


def test_repositories_behind_the_facade_share_no_method_name():
    """`Ledger` inherits one repository per concern: a name defined twice would be shadowed silently
    by the order of the bases."""
    seen: dict[str, str] = {}
    clashes = []
    for repo in Ledger.__bases__:
        for name, v in vars(repo).items():
            if callable(v) and not name.startswith("__"):
                if name in seen:
                    clashes.append(f"{name}: {seen[name]} and {repo.__name__}")
                seen[name] = repo.__name__
    assert len(Ledger.__bases__) >= 10 and len(seen) > 50
    assert not clashes, clashes


def test_drift_queries_read_duplicates_versions_and_dates(ledger):
    """What the drift report reads, through query methods instead of SQL on the tables."""
    old = datetime(2020, 5, 6, tzinfo=timezone.utc)
    _commit(ledger, [_doc("a"), _doc("b", updated_at=old), _doc("c", status="duplicate", duplicate_of="a", dup_kind="exact"),
                     _doc("d", status="duplicate", duplicate_of="a", dup_kind="near"), _doc("e", status="deleted", vh="v-e-old")])
    ledger.commit_batch(BatchCommit(collection="col", feed="f", run_id="run2",
                                    docs=[_doc("f", status="duplicate", duplicate_of="b", dup_kind="exact"), _doc("g", updated_at=None)]))
    assert ledger.duplicates_per_run() == {"run": 2, "run2": 1}
    assert ledger.current_version_hashes() == {"a": "v-a", "b": "v-b", "c": "v-c", "d": "v-d", "e": "v-e-old", "f": "v-f", "g": "v-g"}
    dates = ledger.active_document_dates()  # a, b, g by id; g has no source date: when the ledger wrote it
    assert dates[:2] == [T1, old] and len(dates) == 3
    assert all(t.tzinfo is not None for t in dates) and abs((dates[2] - datetime.now(timezone.utc)).total_seconds()) < 600


def test_query_set_by_hash(ledger):
    assert ledger.query_set("nope") is None
    ledger.register_query_set("h1", "scifact", "q.jsonl + qrels.tsv", 3, 5)
    qs = ledger.query_set("h1")
    assert (qs.hash, qs.name, qs.source, qs.queries, qs.judgements) == ("h1", "scifact", "q.jsonl + qrels.tsv", 3, 5)
