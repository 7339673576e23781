"""`indexops reconcile` in a subprocess: exit 1 with one paragraph while drift remains, --repair
fixes it, --help documents it (--json is exercised by tests/e2e/test_hostile_cli.py)."""

from __future__ import annotations

import subprocess
import sys

from indexops.index.context import open_index
from indexops.index.reconcile import reconcile
from indexops.ingest.driver import ingest_path
from indexops.settings import load_settings
from indexops.store.protocol import StorePoint
from tests.conftest import REPO, write_jsonl

HASHING = str(REPO / "configs" / "hashing.yaml")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "indexops.cli", *args], capture_output=True, text=True, timeout=120)


def test_reconcile_reports_drift_repairs_it_and_exits_accordingly(tmp_path):
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    write_jsonl(feed / "000001.jsonl", [{"id": f"r{i}", "text": f"reconcile document {i} about topic {i % 4}"} for i in range(10)])
    ctx = open_index(ws, load_settings(HASHING))
    try:
        ingest_path(ctx, feed, "delta")
        gone = sorted(r.point_id for rows in ctx.ledger.iter_chunks(ctx.collection) for r in rows)[0]
        ctx.store.delete([gone])
        ctx.store.upsert([StorePoint("00000000-0000-4000-8000-0000000000ff", [0.3] * ctx.embedder.dim, ([2], [1.0]), {"doc_id": "?"})])
    finally:
        ctx.close()
    base = ["reconcile", "--workspace", str(ws), "--config", HASHING]

    p = _cli(*base)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"missing       {gone}" in p.stdout and "extra         00000000-0000-4000-8000-0000000000ff" in p.stdout
    err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "1 point(s) missing, 1 extra" in err[0] and "--repair" in err[0]

    p = _cli(*base, "--repair")
    assert p.returncode == 0, p.stderr
    assert "repaired: deleted 1, rewritten 1" in p.stdout and "clean afterwards" in p.stdout

    ctx = open_index(ws, load_settings(HASHING))
    try:
        assert reconcile(ctx).found.clean
    finally:
        ctx.close()

    help_text = _cli("reconcile", "--help").stdout
    assert "Usage" in help_text and "--repair" in help_text and "--wait" in help_text
