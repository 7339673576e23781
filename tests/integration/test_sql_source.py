"""The `sql` source kind on a real PostgreSQL: the insert / update (later and same watermark) / soft
delete / hard delete sequence with a timestamptz and with an integer version column, read by a role
whose password is in the URL and then nowhere else; and an ingest SIGKILLed after some units
committed, then re-run, ending exactly where an uninterrupted load ends.

The source tables live in a database of their own; the ledgers are SQLite files in tmp_path.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from indexops.index.context import open_index
from indexops.index.snapshot import current_snapshot_id
from indexops.ingest.driver import IngestFailed, ingest_path
from indexops.ingest.keyed import TooManyDeletes
from indexops.settings import load_settings
from tests.conftest import PG_PASSWORD_ROLE, REPO
from tests.unit._helpers import assert_store_matches_ledger
from tests.unit.test_sql_table import FEED, SECRET, SourceTable, index_state, ledger_dump, run_sequence, sql_settings

pytestmark = pytest.mark.integration

ROLE = PG_PASSWORD_ROLE  # pg_hba.conf of the test server asks this role for its password
SEED = 20260412
N_ROWS, TRIALS = 300, 3
CONFIG = (
    "embedding: {model: hashing, dim: 32}\n"
    "ingest: {batch_docs: 10}\n"  # 30 units: a kill lands between commits
    "sql: {table: big, text_column: body, watermark_column: wm, soft_delete_column: deleted, metadata_columns: [cat],\n"
    "      reconcile_every_runs: 1000, password_env: INDEXOPS_TEST_SQL_PASSWORD}\n"  # the resume relies on the watermark alone
)


@pytest.fixture
def pg_source(postgres_url):
    """A fresh database for the source tables: (the owner's engine, a reader URL with a password)."""
    base = sa.engine.make_url(postgres_url)
    db = f"sql_source_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:  # DDL takes no bind parameters: the names are the test's own
        c.exec_driver_sql(f'CREATE DATABASE "{db}"')
        if c.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": ROLE}).first() is None:
            c.exec_driver_sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{SECRET}'")
    owner = sa.create_engine(base.set(database=db))
    with owner.begin() as c:
        c.exec_driver_sql(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {ROLE}")
    yield owner, base.set(database=db, username=ROLE, password=SECRET).render_as_string(hide_password=False)
    owner.dispose()
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE "{db}" WITH (FORCE)')
    admin.dispose()


@pytest.mark.parametrize("kind", ["ts", "int"])
def test_the_change_sequence_on_postgres_ends_at_a_full_loads_snapshot_and_keeps_no_password(pg_source, tmp_path, kind):
    owner, reader = pg_source
    assert SECRET in reader
    table = SourceTable(owner, f"docs_{kind}", kind)
    summaries = run_sequence(table, reader, tmp_path)
    assert SECRET not in repr(summaries)

    table.drop(*"abcdefgh")  # an emptied table (no watermark left to type the position): the guard stops it
    ctx = open_index(tmp_path / "incremental", sql_settings(f"docs_{kind}"))
    try:
        with pytest.raises(IngestFailed) as ei:
            ingest_path(ctx, reader, "sql", feed=FEED)
        assert isinstance(ei.value.__cause__, TooManyDeletes) and len(index_state(ctx)) == 6
    finally:
        ctx.close()
    for ws in ("incremental", "full"):
        ctx = open_index(tmp_path / ws, sql_settings(f"docs_{kind}"))
        try:
            dump = ledger_dump(ctx)
            assert f"{ROLE}:***@" in dump and SECRET not in dump
        finally:
            ctx.close()

    ctx = open_index(tmp_path / "failing", sql_settings("no_such_table"))
    try:
        with pytest.raises(IngestFailed) as ei:
            ingest_path(ctx, reader, "sql", feed=FEED)
        text = f"{ei.value} {ei.value.__cause__!r}"
        assert "no_such_table" in text and f"{ROLE}:***@" in text and SECRET not in text
        assert SECRET not in ledger_dump(ctx)
    finally:
        ctx.close()


def _committed(ws: Path) -> int:
    """Keys the (running) ingest has committed so far: read-only, from its SQLite ledger."""
    try:
        con = sqlite3.connect(f"file:{ws / 'ledger.db'}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM source_keys").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet
        return 0


def test_sigkill_after_some_units_then_a_rerun_equals_an_uninterrupted_load(pg_source, tmp_path, monkeypatch):
    owner, reader = pg_source
    table = SourceTable(owner, "big", "ts")
    table.put_many([(f"r{N_ROWS - i:03d}", f"r{i}", i // 7) for i in range(N_ROWS)])  # 7 rows a watermark, ids in reverse
    u = sa.engine.make_url(reader)
    url = sa.engine.URL.create(u.drivername, u.username, None, u.host, u.port, u.database).render_as_string(hide_password=False)
    monkeypatch.setenv("INDEXOPS_TEST_SQL_PASSWORD", SECRET)  # sql.password_env: the child reads it too
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG)
    settings = load_settings(cfg)

    t0 = time.perf_counter()
    ctx = open_index(tmp_path / "reference", settings)
    try:
        ingest_path(ctx, url, "sql", feed=FEED)
        reference = current_snapshot_id(ctx.ledger, ctx.collection)
        assert len(index_state(ctx)) == N_ROWS
    finally:
        ctx.close()
    span = time.perf_counter() - t0

    rng = random.Random(SEED)
    at_kill: list[int] = []
    for trial in range(TRIALS):
        ws = tmp_path / f"trial{trial}"
        log = tmp_path / f"child{trial}.log"
        with open(log, "wb") as err:
            child = subprocess.Popen([sys.executable, "-m", "tests.integration._sql_crash_child", str(ws), url, str(cfg)],
                                     cwd=REPO, stdout=err, stderr=err, env=dict(os.environ, PYTHONPATH=str(REPO)))
            deadline = time.monotonic() + 60
            while _committed(ws) == 0 and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.8 * span))
            child.send_signal(signal.SIGKILL)
            code = child.wait(30)
        assert code in (0, -signal.SIGKILL), log.read_text()[-3000:]
        at_kill.append(_committed(ws))

        ctx = open_index(ws, settings)
        try:
            ingest_path(ctx, url, "sql", feed=FEED)
            assert len(index_state(ctx)) == N_ROWS and len(ctx.ledger.source_fingerprints(FEED)) == N_ROWS
            assert_store_matches_ledger(ctx)
            assert current_snapshot_id(ctx.ledger, ctx.collection) == reference, f"trial {trial}, killed at {at_kill[-1]} keys"
        finally:
            ctx.close()
    print(f"\nsql crash trials: reference {span:.2f}s, keys committed at each kill {at_kill}")
    assert any(0 < n < N_ROWS for n in at_kill), f"no kill landed inside a run: {at_kill}"


@pytest.mark.e2e
def test_the_password_from_a_prefect_secret_block_and_nowhere_else(pg_source, prefect_server, tmp_path):
    """`sql.password_block` names a Secret on the Prefect server; the CLI, with no password in its
    URL, environment or a .pgpass, is refused by the server without the block (the role must log in
    with a password: the test server's pg_hba.conf says so) and lands the table with it; the password
    is in no output, workspace file, parameter, log or artifact."""
    from datetime import datetime, timezone

    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.run_traces import assert_secret_left_nowhere, cli_ingest

    owner, reader = pg_source
    table = SourceTable(owner, "articles", "ts")
    table.put_many([("a", "alpha", 1), ("b", "beta", 2), ("c", "gamma", 3)])
    u = sa.engine.make_url(reader)
    url = sa.engine.URL.create(u.drivername, u.username, None, u.host, u.port, u.database).render_as_string(hide_password=False)
    assert SECRET not in url
    block = f"crm-reader-{uuid.uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        Secret(value=SECRET).save(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PREFECT_API_URL=prefect_server, PGPASSFILE=str(tmp_path / "no-pgpass"))
    sql = "{table: articles, text_column: body, watermark_column: wm, soft_delete_column: deleted"
    hashing = (REPO / "configs" / "hashing.yaml").read_text()
    (tmp_path / "none.yaml").write_text(hashing + f"sql: {sql}}}\n")
    (tmp_path / "block.yaml").write_text(hashing + f"sql: {sql}, password_block: {block}}}\n")

    def ingest(config: str, ws: str) -> subprocess.CompletedProcess:
        return cli_ingest(url, "sql", tmp_path / ws, tmp_path / config, env)

    refused = ingest("none.yaml", "ws-none")
    assert refused.returncode != 0 and "password" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    started = datetime.now(timezone.utc)
    p = ingest("block.yaml", "ws")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "listed 3, fetched 3" in p.stdout
    texts = assert_secret_left_nowhere(SECRET, p, tmp_path / "ws", started, prefect_server)
    assert f"source credentials from Prefect block {block}" in texts["logs"]
