"""The `sql` source kind on SQLite: a table read incrementally by its watermark (inclusive bound,
fingerprints decide), hard deletes found by the periodic id reconciliation, soft deletes, bad rows
quarantined, the delete guard, a run that fails half way resumed without loss, and no password in
what a run leaves behind. After every step the index holds exactly the table's documents, and the
incremental index ends with the snapshot id of a fresh full load of the final table.

`SourceTable`, `run_sequence` and `ledger_dump` are shared with tests/integration/test_sql_source.py
(the same sequence on PostgreSQL)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from indexops.index.context import open_index
from indexops.index.snapshot import current_snapshot_id
from indexops.ingest.driver import IngestFailed, ingest_path
from indexops.ingest.keyed import TooManyDeletes
from indexops.ingest.sql_table import SqlSourceError, SqlTable
from indexops.ingest.storage import SourceCredentials
from indexops.ingest.units import plan_source
from tests.unit._helpers import assert_store_matches_ledger, doc_ids_in_store, settings_for

pytestmark = pytest.mark.unit

FEED = "docs"
SECRET = "s3cr3t-XYZ"
WORDS = ("ledger vector store chunk batch feed snapshot query recall token model cosine sparse dense hybrid cursor "
         "replay commit crash signal worker segment payload filter search answer table row column watermark").split()


def text_of(tag: str) -> str:
    """A distinct text per tag (no two documents are duplicates of each other)."""
    rng = random.Random(tag)
    return " ".join(rng.choice(WORDS) for _ in range(16)) + f" {tag}."


class SourceTable:
    """The source table, written through an admin engine; `kind` is the watermark's type: `ts`
    (timestamptz on PostgreSQL, ISO text on SQLite) or `int` (a version number)."""

    def __init__(self, engine: sa.Engine, name: str, kind: str) -> None:
        self.engine, self.name, self.kind = engine, name, kind
        sqlite = engine.dialect.name == "sqlite"
        wm = sa.Integer() if kind == "int" else sa.Text() if sqlite else sa.DateTime(timezone=True)
        self.t = sa.Table(name, sa.MetaData(), sa.Column("id", sa.String(64)), sa.Column("title", sa.Text),
                          sa.Column("body", sa.Text), sa.Column("wm", wm), sa.Column("cat", sa.Text),
                          sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()))
        self.t.metadata.create_all(engine)

    def mark(self, k: int) -> Any:
        if self.kind == "int":
            return 10 * k
        if self.engine.dialect.name == "sqlite":
            return f"2024-01-{1 + k // 24:02d} {k % 24:02d}:00:00"
        return datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(hours=k)

    def put(self, doc_id: str, tag: str | None, k: int, deleted: bool = False) -> None:
        """Insert or replace a row; `tag` None: NULL text."""
        with self.engine.begin() as c:
            c.execute(self.t.delete().where(self.t.c.id == doc_id))
            c.execute(self.t.insert().values(id=doc_id, title=f"Title {doc_id}", body=text_of(tag) if tag else None,
                                             wm=self.mark(k), cat=f"cat-{doc_id}", deleted=deleted))

    def put_many(self, rows: list[tuple[str, str, int]]) -> None:
        with self.engine.begin() as c:
            c.execute(self.t.insert(), [{"id": i, "title": f"Title {i}", "body": text_of(tag), "wm": self.mark(k),
                                         "cat": f"cat-{i}", "deleted": False} for i, tag, k in rows])

    def drop(self, *ids: str) -> None:
        with self.engine.begin() as c:
            c.execute(self.t.delete().where(self.t.c.id.in_(ids)))


def sql_settings(table: str, sql: dict[str, Any] | None = None, **top: Any):
    return settings_for({"sql": {"table": table, "text_column": "body", "watermark_column": "wm", "soft_delete_column": "deleted",
                                 "metadata_columns": ["cat"], "reconcile_every_runs": 2, **(sql or {})}, **top})


def index_state(ctx) -> dict[str, str]:
    """The index's documents (doc id -> text); the store holds the same ids."""
    ids = ctx.ledger.active_doc_ids(FEED)
    assert doc_ids_in_store(ctx) == ids
    docs = ctx.ledger.get_documents(ids)
    return {d: docs[d].text for d in ids}


def ledger_dump(ctx) -> str:
    """Every row of every ledger table, as text."""
    md = sa.MetaData()
    md.reflect(ctx.ledger.engine)
    with ctx.ledger.engine.connect() as c:
        return "\n".join(str(r) for t in md.sorted_tables for r in c.execute(sa.select(t)))


def full_load(workspace: Path, url: str, settings) -> tuple[str, dict[str, str]]:
    """A fresh workspace's first run over the table: its snapshot id and documents."""
    ctx = open_index(workspace, settings)
    try:
        ingest_path(ctx, url, "sql", feed=FEED)
        return current_snapshot_id(ctx.ledger, ctx.collection), index_state(ctx)
    finally:
        ctx.close()


def run_sequence(table: SourceTable, url: str, root: Path) -> list[dict[str, Any]]:
    """Insert, update (later and same watermark), soft delete, hard delete and a late row between
    runs (reconciliation every 2nd run), checking the index against the table after each run;
    returns the run summaries."""
    s = sql_settings(table.name)
    T = text_of
    ctx = open_index(root / "incremental", s)
    out: list[dict[str, Any]] = []

    def run(expected: dict[str, str]) -> dict[str, int]:
        out.append(ingest_path(ctx, url, "sql", feed=FEED))
        assert index_state(ctx) == expected, f"after run {len(out)}"
        return out[-1]["keys"]

    try:
        for i, tag, k in [("a", "a1", 1), ("b", "b1", 1), ("c", "c1", 2), ("d", "d1", 2), ("e", "e1", 3), ("f", "f1", 3)]:
            table.put(i, tag, k)
        run({"a": T("a1"), "b": T("b1"), "c": T("c1"), "d": T("d1"), "e": T("e1"), "f": T("f1")})
        assert ctx.ledger.get_documents(["a"])["a"].metadata == {"cat": "cat-a"}

        # nothing changed: only the two rows at the stored watermark are listed, and nothing is fetched
        keys = run({"a": T("a1"), "b": T("b1"), "c": T("c1"), "d": T("d1"), "e": T("e1"), "f": T("f1")})
        assert keys == {"listed": 2, "fetched": 0, "unchanged": 2, "deleted": 0, "unreadable": 0}

        table.put("g", "g1", 4)  # a new row (a reconciling run)
        keys = run({"a": T("a1"), "b": T("b1"), "c": T("c1"), "d": T("d1"), "e": T("e1"), "f": T("f1"), "g": T("g1")})
        assert keys["fetched"] == 1 and keys["deleted"] == 0

        table.put("b", "b2", 5)  # updated, later watermark
        keys = run({"a": T("a1"), "b": T("b2"), "c": T("c1"), "d": T("d1"), "e": T("e1"), "f": T("f1"), "g": T("g1")})
        assert keys["fetched"] == 1

        table.put("b", "b3", 5)  # updated again, keeping the stored watermark
        keys = run({"a": T("a1"), "b": T("b3"), "c": T("c1"), "d": T("d1"), "e": T("e1"), "f": T("f1"), "g": T("g1")})
        assert keys["fetched"] == 1

        table.put("c", "c1", 6, deleted=True)  # soft delete
        table.drop("d")  # hard delete: not seen until a reconciling run
        table.put("h", "h1", 2)  # committed late, with a watermark before the stored one
        keys = run({"a": T("a1"), "b": T("b3"), "d": T("d1"), "e": T("e1"), "f": T("f1"), "g": T("g1")})
        assert keys["deleted"] == 0

        keys = run({"a": T("a1"), "b": T("b3"), "e": T("e1"), "f": T("f1"), "g": T("g1"), "h": T("h1")})
        assert keys["deleted"] == 1 and keys["fetched"] == 1

        # the late row did not move the watermark back: only the row at the newest watermark is listed
        keys = run({"a": T("a1"), "b": T("b3"), "e": T("e1"), "f": T("f1"), "g": T("g1"), "h": T("h1")})
        assert keys == {"listed": 1, "fetched": 0, "unchanged": 1, "deleted": 0, "unreadable": 0}
        assert_store_matches_ledger(ctx)
        incremental = current_snapshot_id(ctx.ledger, ctx.collection)
    finally:
        ctx.close()
    snap, docs = full_load(root / "full", url, s)
    assert docs == {"a": T("a1"), "b": T("b3"), "e": T("e1"), "f": T("f1"), "g": T("g1"), "h": T("h1")}
    assert incremental == snap
    return out


def _sqlite(tmp_path: Path) -> tuple[sa.Engine, str]:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    return sa.create_engine(url), url


@pytest.mark.parametrize("kind", ["ts", "int"])
def test_insert_update_soft_and_hard_delete_follow_the_table_and_end_at_a_full_loads_snapshot(tmp_path, kind):
    engine, url = _sqlite(tmp_path)
    run_sequence(SourceTable(engine, "docs", kind), url, tmp_path)
    engine.dispose()


def test_deleting_most_rows_fails_the_run_and_leaves_the_index_unchanged(tmp_path):
    engine, url = _sqlite(tmp_path)
    table = SourceTable(engine, "docs", "int")
    table.put_many([(f"r{i}", f"r{i}", i) for i in range(6)])
    ctx = open_index(tmp_path / "ws", sql_settings("docs", {"reconcile_every_runs": 1}))
    try:
        ingest_path(ctx, url, "sql", feed=FEED)
        before = (current_snapshot_id(ctx.ledger, ctx.collection), index_state(ctx), ctx.ledger.source_fingerprints(FEED),
                  ctx.ledger.source_position(FEED))
        table.drop("r0", "r1", "r2", "r3")
        with pytest.raises(IngestFailed) as ei:
            ingest_path(ctx, url, "sql", feed=FEED)
        assert isinstance(ei.value.__cause__, TooManyDeletes)
        after = (current_snapshot_id(ctx.ledger, ctx.collection), index_state(ctx), ctx.ledger.source_fingerprints(FEED),
                 ctx.ledger.source_position(FEED))
        assert after == before and len(before[1]) == 6
    finally:
        ctx.close()
    engine.dispose()


def test_a_run_failing_between_units_resumes_at_the_watermark_without_loss_or_repeat(tmp_path, monkeypatch):
    engine, url = _sqlite(tmp_path)
    table = SourceTable(engine, "docs", "ts")
    table.put_many([(f"r{29 - i:02d}", f"r{i}", i // 5) for i in range(30)])  # 5 rows per watermark, ids in reverse
    s = sql_settings("docs", {"reconcile_every_runs": 100}, ingest={"batch_docs": 4})  # the resume relies on the watermark
    real, calls = SqlTable.fetch, []

    def failing(self, ctx, keys):
        calls.append(len(keys))
        if len(calls) == 3:
            raise RuntimeError("database went away")
        yield from real(self, ctx, keys)

    ctx = open_index(tmp_path / "ws", s)
    try:
        monkeypatch.setattr(SqlTable, "fetch", failing)
        with pytest.raises(IngestFailed):
            ingest_path(ctx, url, "sql", feed=FEED)
        monkeypatch.undo()
        # two units landed; the position is the 8th row's watermark, which the 9th and 10th rows share
        assert len(index_state(ctx)) == 8 and ctx.ledger.source_position(FEED)["position"] == table.mark(1)
        keys = ingest_path(ctx, url, "sql", feed=FEED)["keys"]
        assert keys["fetched"] == 22 and set(index_state(ctx)) == {f"r{i:02d}" for i in range(30)}
        keys = ingest_path(ctx, url, "sql", feed=FEED)["keys"]
        assert keys == {"listed": 5, "fetched": 0, "unchanged": 5, "deleted": 0, "unreadable": 0}
        assert_store_matches_ledger(ctx)
        resumed = current_snapshot_id(ctx.ledger, ctx.collection)
    finally:
        ctx.close()
    assert full_load(tmp_path / "full", url, s)[0] == resumed
    engine.dispose()


def test_rows_with_null_id_or_text_are_quarantined_once_and_the_rest_lands(tmp_path):
    engine, url = _sqlite(tmp_path)
    table = SourceTable(engine, "docs", "int")
    table.put_many([("a", "a1", 1), ("b", "b1", 1)])
    table.put("c", None, 2)
    with engine.begin() as c:
        c.execute(table.t.insert().values(id=None, title="no id", body=text_of("x"), wm=30, cat="x"))
    ctx = open_index(tmp_path / "ws", sql_settings("docs"))
    try:
        keys = ingest_path(ctx, url, "sql", feed=FEED)["keys"]
        assert keys["unreadable"] == 2 and set(index_state(ctx)) == {"a", "b"}
        q = ctx.ledger.list_quarantine(FEED)
        assert {r["reason"].split(" (")[0]: r["record_id"] for r in q} == {
            "text column 'body' is NULL or empty": "c", "id column 'id' is NULL": None}
        assert all(r["file"] == "docs" and r["line"] > 0 for r in q)
        for _ in range(2):  # an incremental and a reconciling run: the bad rows' fingerprints are kept
            assert ingest_path(ctx, url, "sql", feed=FEED)["keys"]["unreadable"] == 0
        assert len(ctx.ledger.list_quarantine(FEED)) == 2
        table.put("c", "c2", 4)
        ingest_path(ctx, url, "sql", feed=FEED)
        assert index_state(ctx) == {"a": text_of("a1"), "b": text_of("b1"), "c": text_of("c2")}
    finally:
        ctx.close()
    engine.dispose()


def test_a_query_is_read_as_a_subquery_and_odd_table_names_are_quoted(tmp_path):
    engine, url = _sqlite(tmp_path)
    table = SourceTable(engine, "order items", "int")
    table.put_many([("a", "a1", 1), ("b", "b1", 2), ("c", "c1", 3)])
    _, docs = full_load(tmp_path / "t", url, sql_settings("order items"))
    assert set(docs) == {"a", "b", "c"}
    query = "SELECT id, title, body, wm, cat, deleted FROM \"order items\" WHERE cat <> 'cat-b'"
    _, docs = full_load(tmp_path / "q", url, sql_settings(None, {"query": query}))
    assert docs == {"a": text_of("a1"), "c": text_of("c1")}
    engine.dispose()


def test_no_watermark_column_lists_every_row_every_run(tmp_path):
    engine, url = _sqlite(tmp_path)
    table = SourceTable(engine, "docs", "int")
    table.put_many([("a", "a1", 1), ("b", "b1", 2)])
    ctx = open_index(tmp_path / "ws", sql_settings("docs", {"watermark_column": None, "reconcile_every_runs": 5}))
    try:
        ingest_path(ctx, url, "sql", feed=FEED)
        table.put("a", "a2", 0)  # an "older" version number: without a watermark it does not matter
        table.drop("b")
        keys = ingest_path(ctx, url, "sql", feed=FEED)["keys"]
        assert keys == {"listed": 1, "fetched": 1, "unchanged": 0, "deleted": 1, "unreadable": 0}
        assert index_state(ctx) == {"a": text_of("a2")} and ctx.ledger.source_position(FEED).get("position") is None
    finally:
        ctx.close()
    engine.dispose()


def test_a_password_in_the_url_or_the_environment_is_in_no_error_state_or_repr(tmp_path, monkeypatch):
    url = f"postgresql+psycopg://reader:{SECRET}@127.0.0.1:1/source"

    def leaky(self):  # a driver that echoes its connection string in the error
        raise RuntimeError(f"could not connect to {self.url} with password {SECRET}")

    monkeypatch.setattr(SqlTable, "_engine_", leaky)
    ctx = open_index(tmp_path / "ws", sql_settings("docs"))
    try:
        with pytest.raises(IngestFailed) as ei:
            ingest_path(ctx, url, "sql", feed=FEED)
        text = f"{ei.value} {ei.value.__cause__!r}"
        assert SECRET not in text and "reader:***@127.0.0.1" in text and isinstance(ei.value.__cause__, SqlSourceError)
        assert "could not connect" in ledger_dump(ctx) and SECRET not in ledger_dump(ctx)
    finally:
        ctx.close()
    monkeypatch.undo()
    assert SECRET not in repr(SqlTable(url, FEED, sql_settings("docs").sql))

    src = SqlTable("postgresql+psycopg://reader@127.0.0.1:1/source", FEED, sql_settings("docs", {"password_env": "SQL_TEST_PW"}).sql)
    monkeypatch.delenv("SQL_TEST_PW", raising=False)
    with pytest.raises(SqlSourceError, match="SQL_TEST_PW"):
        with src._reading("listing"):
            src._engine_()
    monkeypatch.setenv("SQL_TEST_PW", "env-" + SECRET)
    assert src._engine_().url.password == "env-" + SECRET
    assert SECRET not in repr(src) and SECRET not in str(src._engine_().url)

    given = SqlTable("postgresql+psycopg://reader@127.0.0.1:1/source", FEED, sql_settings("docs").sql, password="blk-" + SECRET)
    assert given._engine_().url.password == "blk-" + SECRET and SECRET not in repr(given)
    with pytest.raises(SqlSourceError) as ei:
        with given._reading("listing"):
            raise RuntimeError(f"auth failed for password blk-{SECRET}")  # a driver echoing what it was given
    assert SECRET not in str(ei.value) and "***" in str(ei.value)


def test_one_place_for_the_password():
    with pytest.raises(ValidationError, match="one of sql.password_env and sql.password_block"):
        sql_settings("docs", {"password_env": "PW", "password_block": "crm-reader"})


def test_a_direct_run_says_the_configured_password_block_is_not_read(tmp_path, caplog):
    """Only the flows read Prefect blocks; the core driver run directly says so instead of staying silent."""
    engine, url = _sqlite(tmp_path)
    SourceTable(engine, "docs", "int").put_many([("a", "a1", 1)])
    ctx = open_index(tmp_path / "ws", sql_settings("docs", {"password_block": "crm-reader"}))
    try:
        with caplog.at_level("WARNING", logger="indexops.ingest.units"):
            ingest_path(ctx, url, "sql", feed=FEED)
        assert any("Prefect block crm-reader" in r.getMessage() for r in caplog.records)
        caplog.clear()
        with caplog.at_level("WARNING", logger="indexops.ingest.units"):
            plan = plan_source(ctx, url, "sql", FEED, SourceCredentials())  # SQLite takes no password
            list(plan.units)
        assert not caplog.records  # credentials given: nothing to say
    finally:
        ctx.close()
    engine.dispose()
