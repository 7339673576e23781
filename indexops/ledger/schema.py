"""The ledger's tables (SQLAlchemy Core), how a ledger's schema is created and migrated on open,
and the LSH band tiers' upkeep."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.schema import CreateIndex


SCHEMA_VERSION = 1

metadata = MetaData()

documents = Table(
    "documents",
    metadata,
    Column("doc_id", String(512), primary_key=True),
    Column("feed", String(512), nullable=False),
    Column("status", String(16), nullable=False),  # active | duplicate | deleted
    Column("title", Text, nullable=False, default=""),
    Column("text", Text),
    Column("metadata_json", Text, nullable=False, default="{}"),
    Column("updated_at", DateTime(timezone=True)),
    Column("version_hash", String(64)),
    Column("text_hash", String(64)),
    Column("duplicate_of", String(512)),
    Column("dup_kind", String(8)),  # exact | near
    Column("similarity", Float),
    Column("minhash", LargeBinary),
    Column("bands", LargeBinary),  # the LSH band keys of an active document (8 bytes each); NULL: written before lazy band deletion
    Column("version", Integer, nullable=False, default=1),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(64)),
    Index("ix_documents_text_hash", "text_hash"),
    Index("ix_documents_duplicate_of", "duplicate_of"),
    Index("ix_documents_feed_status", "feed", "status"),
)

chunks = Table(
    "chunks",
    metadata,
    Column("collection", String(128), primary_key=True),
    Column("chunk_id", String(64), primary_key=True),
    Column("doc_id", String(512), nullable=False),
    Column("position", Integer, nullable=False),
    Column("chunk_hash", String(64), nullable=False),
    Column("embed_hash", String(64), nullable=False),
    Column("point_id", String(36), nullable=False),
    Column("n_chars", Integer, nullable=False, default=0),
    Index("ix_chunks_doc", "collection", "doc_id"),
    Index("ix_chunks_point", "collection", "point_id"),  # reconcile walks chunks in point-id order
)

# LSH band key -> document, in two tiers. Integer keys in clustered (WITHOUT ROWID) tables. Band
# keys are random, so each of a delta's ~16 rows per document lands on its own page of a large
# table: at 1M documents that was 20,500 of the 28,400 pages (111 MB of WAL) a 1,000-document
# delta wrote. So a commit adds rows to the small `lsh_recent` and deletes none: a document's
# rows under bands it no longer has (or rows of a document no longer active) stay behind, and
# `lsh_candidates` drops them by the document's current `documents.bands`. `lsh_recent` is folded
# into `lsh_bands` in key order (one pass over the pages it touches) when it reaches 1/8 of it,
# or at the end of a batch that wrote most of it (a bulk load). Older ledgers are converted on
# open (_migrate_lsh_buckets); their rows predate lazy deletion, so rows of documents whose
# `bands` is NULL (written before it) are exact.
lsh_bands = Table(
    "lsh_bands",
    metadata,
    Column("band", BigInteger, primary_key=True, autoincrement=False),
    Column("doc_id", String(512), primary_key=True),
    Index("ix_lsh_bands_doc", "doc_id"),
    sqlite_with_rowid=False,
)

lsh_recent = Table(
    "lsh_recent",
    metadata,
    Column("band", BigInteger, primary_key=True, autoincrement=False),
    Column("doc_id", String(512), primary_key=True),
    sqlite_with_rowid=False,
)

LSH_FOLD_MIN_ROWS = 1 << 18  # lsh_recent stays unfolded below this many rows (~16k documents)
LSH_FOLD_FRACTION = 8  # ... and below 1/8 of lsh_bands, unless one batch wrote most of it

cursors = Table(
    "cursors",
    metadata,
    Column("feed", String(512), primary_key=True),
    Column("last_file", String(1024), nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# documents per status, kept by every commit (O(batch)): a snapshot reads its counts here instead
# of grouping every ledger document (0.12 s at 100k documents, ten times that at 1M)
doc_counts = Table(
    "doc_counts",
    metadata,
    Column("status", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

applied_files = Table(
    "applied_files",
    metadata,
    Column("feed", String(512), primary_key=True),
    Column("file_name", String(1024), primary_key=True),
    Column("file_hash", String(64), nullable=False),
    Column("records", Integer, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(64)),
    # the file's size and mtime when its hash was taken: a later scan that sees the same two trusts the
    # hash instead of re-reading the file (NULL in ledgers written before they were kept: hashed)
    Column("file_size", BigInteger),
    Column("file_mtime_ns", BigInteger),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64)),
    Column("feed", String(512), nullable=False),
    Column("file", String(1024), nullable=False),
    Column("line", Integer, nullable=False),
    Column("record_id", String(512)),
    Column("reason", Text, nullable=False),
    Column("excerpt", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

index_state = Table(
    "index_state",
    metadata,
    Column("collection", String(128), primary_key=True),
    Column("acc", String(64), nullable=False),  # multiset hash: sum of chunk hashes mod 2^256
    Column("chunks", Integer, nullable=False),
    Column("recipe_json", Text, nullable=False),
    Column("snapshot_id", String(64)),
    Column("settings_json", Text),  # the full settings, so the collection can be reopened as built
)

# Serving aliases ("live"): which collection and snapshot an alias served, and since when.
aliases = Table(
    "aliases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("collection", String(128), nullable=False),
    Column("snapshot_id", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("pinned", Integer),  # 1: readers serve exactly snapshot_id; else the collection's newest published snapshot
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("collection", String(128), nullable=False),
    Column("snapshot_id", String(64)),
    Column("action", String(16), nullable=False),  # init | promote | rollback
    Column("reason", Text),
    Column("at", DateTime(timezone=True), nullable=False),
)

query_sets = Table(
    "query_sets",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("source", Text),
    Column("queries", Integer, nullable=False),
    Column("judgements", Integer, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
)

eval_runs = Table(
    "eval_runs",
    metadata,
    Column("eval_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("snapshot_id", String(64), nullable=False),
    Column("collection", String(128), nullable=False),
    Column("query_set_hash", String(64), nullable=False),
    Column("retriever", String(32), nullable=False),
    Column("recipe_json", Text, nullable=False),  # retriever config, model fingerprint, code version
    Column("metrics_json", Text, nullable=False),
    Column("pinned", String(64)),  # a baseline name when pinned
    Index("ix_eval_runs_snapshot", "snapshot_id"),
)

eval_queries = Table(
    "eval_queries",
    metadata,
    Column("eval_id", String(64), primary_key=True),
    Column("qid", String(256), primary_key=True),
    Column("metrics_json", Text, nullable=False),
    Column("ranking_json", Text, nullable=False),  # top documents with scores
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("snapshot_id", String(64), nullable=False, index=True),
    Column("collection", String(128), nullable=False),
    Column("parent", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(64)),
    Column("documents", Integer, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("manifest_json", Text, nullable=False),
)

# Which version of each document was active between two ledger versions (slowly changing
# dimension): a batch writes O(batch) rows, and any snapshot's document set is a range query.
doc_history = Table(
    "doc_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("doc_id", String(512), nullable=False),
    Column("version_hash", String(64), nullable=False),
    Column("valid_from", Integer, nullable=False),
    Column("valid_to", Integer),
    Index("ix_history_doc_open", "doc_id", "valid_to"),
    Index("ix_history_from", "valid_from"),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("feed", String(512)),
    Column("source", Text),
    Column("status", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("counts_json", Text),
    Column("error", Text),
    Column("snapshot_id", String(64)),
)

# what a keyed source (a document tree, a bucket, a table) held at each key when it was last
# applied: a later listing fetches only the keys whose fingerprint differs (written by the batch commit)
source_keys = Table(
    "source_keys",
    metadata,
    Column("feed", String(512), primary_key=True),
    Column("key", String(1024), primary_key=True),
    Column("fingerprint", String(256), nullable=False),
    sqlite_with_rowid=False,
)

# a keyed source's own position (a table's watermark, its last full key reconciliation), as JSON
source_state = Table(
    "source_state",
    metadata,
    Column("feed", String(512), primary_key=True),
    Column("state_json", Text, nullable=False),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("owner", String(256), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)



def pack_bands(keys: Sequence[int]) -> bytes:
    """Band keys as stored in `documents.bands` (63-bit, 8 bytes each)."""
    return b"".join(k.to_bytes(8, "little") for k in keys)


def unpack_bands(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]


def _insert_ignoring_existing(c: Connection, table: Table) -> Any:
    """INSERT that skips rows whose key is there already (SQLite and Postgres)."""
    if c.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table).on_conflict_do_nothing()


def _counter(c: Connection, name: str) -> int | None:
    row = c.execute(select(counters.c.value).where(counters.c.name == name)).first()
    return None if row is None else int(row.value)


def _set_counter(c: Connection, name: str, value: int) -> None:
    if c.execute(update(counters).where(counters.c.name == name).values(value=value)).rowcount == 0:
        c.execute(insert(counters).values(name=name, value=value))


def _after_lsh_insert(c: Connection, written: int) -> None:
    """Count what a batch wrote to `lsh_recent` (an upper bound: re-inserted rows are skipped)
    and fold it into `lsh_bands` once it is 1/8 of it, or this batch wrote most of it."""
    recent = (_counter(c, "lsh_recent_rows") or 0) + written
    main = _counter(c, "lsh_bands_rows") or 0  # set on open (_init_lsh_counts)
    if recent >= LSH_FOLD_MIN_ROWS and (recent * LSH_FOLD_FRACTION >= main or written * 2 >= recent):
        _fold_lsh(c)
    else:
        _set_counter(c, "lsh_recent_rows", recent)


def _fold_lsh(c: Connection) -> int:
    """`lsh_recent` into `lsh_bands` in key order (each page of the large table written once),
    without rows of documents that are no longer active; then empty it."""
    q = (
        select(lsh_recent.c.band, lsh_recent.c.doc_id)
        .join(documents, documents.c.doc_id == lsh_recent.c.doc_id)
        .where(documents.c.status == "active")
        .order_by(lsh_recent.c.band, lsh_recent.c.doc_id)
    )
    stmt = _insert_ignoring_existing(c, lsh_bands).from_select(["band", "doc_id"], q)
    if c.dialect.name == "postgresql":  # its driver reports no row count for INSERT ... SELECT ... ON CONFLICT
        moved = int(c.execute(select(func.count()).select_from(stmt.returning(lsh_bands.c.band).cte("moved"))).scalar_one())
    else:
        moved = c.execute(stmt).rowcount
    c.execute(delete(lsh_recent))
    _set_counter(c, "lsh_bands_rows", (_counter(c, "lsh_bands_rows") or 0) + moved)
    _set_counter(c, "lsh_recent_rows", 0)
    return moved


def _create_schema(engine: Engine) -> None:
    """Create missing tables and indexes; safe when several processes open a new ledger at once."""
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            # create_all skips every index of a table that already exists: add newer ones to old ledgers
            with engine.begin() as c:
                c.execute(CreateIndex(next(ix for ix in chunks.indexes if ix.name == "ix_chunks_point"), if_not_exists=True))
            _migrate_lsh_buckets(engine)
            _init_doc_counts(engine)
            _init_lsh_counts(engine)
            _add_missing_columns(engine, applied_files)
            _add_missing_columns(engine, documents)
            _add_missing_columns(engine, aliases)
            return
        except (OperationalError, ProgrammingError, IntegrityError) as e:
            # a concurrent opener created the same table between our check and our CREATE
            if attempt == 4 or "exist" not in str(e).lower() and "locked" not in str(e).lower():
                raise
            time.sleep(0.1 * (attempt + 1))



def _add_missing_columns(engine: Engine, table: Table) -> None:
    """Add a table's newer nullable columns to a ledger created before them (create_all adds none)."""
    have = {col["name"] for col in inspect(engine).get_columns(table.name)}
    for col in table.columns:
        if col.name not in have:
            assert col.nullable, f"{table.name}.{col.name}: only nullable columns can be added to existing rows"
            with engine.begin() as c:
                c.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {col.name} {col.type.compile(dialect=engine.dialect)}"))


def _init_doc_counts(engine: Engine) -> None:
    """A ledger written before `doc_counts` existed has documents and no counts: count them once."""
    try:
        with engine.begin() as c:
            if c.execute(select(doc_counts.c.status).limit(1)).first() is not None:
                return
            rows = c.execute(select(documents.c.status, func.count()).group_by(documents.c.status)).all()
            if rows:
                c.execute(insert(doc_counts), [{"status": st, "n": n} for st, n in rows])
    except IntegrityError:
        pass  # another process counted them first


def _init_lsh_counts(engine: Engine) -> None:
    """A ledger from before the two LSH tiers has no row counts for them: count once (at 1M
    documents a scan of ~16M keys, a second or two, on the first open by this version)."""
    try:
        with engine.begin() as c:
            if _counter(c, "lsh_bands_rows") is not None:
                return
            for t, name in ((lsh_bands, "lsh_bands_rows"), (lsh_recent, "lsh_recent_rows")):
                _set_counter(c, name, int(c.execute(select(func.count()).select_from(t)).scalar_one()))
    except IntegrityError:
        pass  # another process counted them first


def _migrate_lsh_buckets(engine: Engine) -> None:
    """Move an older ledger's hex-keyed `lsh_buckets` rows into `lsh_bands`, once, in one
    transaction (the keys map exactly: see dedupe.band_key); then drop the old table."""
    if not inspect(engine).has_table("lsh_buckets"):
        return
    from indexops.ingest.dedupe import band_key

    with engine.begin() as c:
        if not inspect(c).has_table("lsh_buckets"):  # another process converted it meanwhile
            return
        rows = c.execute(text("SELECT bucket, doc_id FROM lsh_buckets")).yield_per(50_000)
        for part in rows.partitions():
            c.execute(insert(lsh_bands), [{"band": band_key(bytes.fromhex(b)), "doc_id": d} for b, d in part])
        c.execute(text("DROP TABLE lsh_buckets"))



def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
