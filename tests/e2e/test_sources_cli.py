"""`indexops ingest` as the one front door for every source kind, in subprocesses: a SQL table
(`--source sql --feed sqlite:///…`, table settings in the config), a document tree, and the refusals
a user meets (a URL with its password in it, an unknown kind) -- without echoing the password."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from indexops.ledger import Ledger
from tests.conftest import REPO

CLI = [sys.executable, "-m", "indexops.cli"]


@pytest.fixture
def cli(prefect_server, tmp_path):
    env = dict(os.environ, PREFECT_API_URL=prefect_server)

    def _run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(CLI + list(args), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    return _run


def test_a_table_through_the_cli(cli, tmp_path):
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE articles (id INTEGER PRIMARY KEY, title TEXT, body TEXT, lang TEXT, updated_at TEXT)")
        c.executemany("INSERT INTO articles VALUES (?, ?, ?, ?, ?)", [
            (1, "Refunds", "Refunds are paid within five days.", "en", "2026-11-01T00:00:00"),
            (2, "Shipping", "Parcels leave the warehouse every weekday.", "en", "2026-11-02T00:00:00")])
    cfg = tmp_path / "crm.yaml"
    cfg.write_text(f"{(REPO / 'configs' / 'hashing.yaml').read_text()}\nsql: {{table: articles, text_column: body, metadata_columns: [lang]}}\n")
    ws = str(tmp_path / "ws")
    first = cli("ingest", "--feed", f"sqlite:///{db}", "--source", "sql", "--workspace", ws, "--config", str(cfg), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    out = json.loads(first.stdout)
    assert out["feed"] == "articles" and out["snapshot"]["documents"] == 2
    with sqlite3.connect(db) as c:
        c.execute("UPDATE articles SET body = 'Refunds are paid within three days.', updated_at = '2026-11-03T00:00:00' WHERE id = 1")
    second = cli("ingest", "--feed", f"sqlite:///{db}", "--source", "sql", "--workspace", ws, "--config", str(cfg))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "fetched 1, unchanged 1, deleted 0" in second.stdout  # the updated row only; the other is the boundary row or an id
    led = Ledger.for_workspace(ws)
    try:
        assert led.get_documents(["1"])["1"].text == "Refunds are paid within three days."
    finally:
        led.close()


def test_refusals_name_the_fix_and_never_echo_a_password(cli, tmp_path):
    p = cli("ingest", "--feed", "postgresql+psycopg://app:Pw-echo-7731@127.0.0.1:1/crm", "--source", "sql", "--workspace", str(tmp_path / "ws"))
    assert p.returncode == 2
    assert "Pw-echo-7731" not in p.stdout + p.stderr and "PGPASSWORD" in p.stdout + p.stderr
    p = cli("ingest", "--feed", str(tmp_path), "--source", "table", "--workspace", str(tmp_path / "ws"))
    assert p.returncode == 2 and "documents" in p.stdout + p.stderr
