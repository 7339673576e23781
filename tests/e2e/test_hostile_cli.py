"""Hostile feeds through the CLI, in subprocesses, against the session's Prefect server.

One scenario, run once for the module: a first ingest of every kind of bad line beside good
ones (it succeeds: bad lines become quarantine rows with a reason), then a second ingest with a
replayed batch, a late (out-of-order) batch, a batch rewritten after it was applied and an
unreadable Parquet file (it fails with one clear paragraph). Fake alerting secrets (a webhook URL,
an SMTP password) sit in the environment throughout and `alerts setup` wires them into Prefect
notification blocks before the failing run; the last test proves they reach neither the workspace,
the CLI output, the drift report, the run logs, artifacts and automations, nor the server log.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from indexops.ledger import Ledger
from tests.conftest import _PREFECT_HOME, REPO, write_jsonl
from tests.run_traces import prefect_texts
from tests.webhook_receiver import Receiver

HOSTILE = REPO / "tests" / "data" / "hostile"
CLI = [sys.executable, "-m", "indexops.cli"]
WEBHOOK_TOKEN = "wh-7f3a9c5e1d"  # the secret part of the webhook URL (a loopback receiver's path: the page is really sent)
SECRETS = {
    "INDEXOPS_ALERT_WEBHOOK_URL": "",  # set by the scenario: http://127.0.0.1:<receiver>/services/T0/B0/<token>
    "INDEXOPS_SMTP_PASSWORD": "smtp-p4ss-9d2e71b04c",
}
# hostile files (the rest of tests/data/hostile is covered by tests/unit/test_readers.py),
# renamed so the batches apply in this order
FILES = ["malformed.jsonl", "wrong_types.jsonl", "missing_ids.jsonl", "empty_texts.jsonl", "invalid_utf8.jsonl", "bom.jsonl",
         "crlf.jsonl", "nul.jsonl", "dup_ids.jsonl", "delete_unknown.jsonl", "nested_metadata.jsonl", "rows.csv",
         "invalid_utf8.csv", "wrong_types.parquet"]
ODD_NAMES = {"000030 with spaces.jsonl": "sp1", "000031-ünïcødé-文件.jsonl": "uni1", "000032..dots..jsonl": "dot1"}


def _name(f: str) -> str:
    return f"{FILES.index(f) + 1:06d}-{f}"


@pytest.fixture(scope="module")
def scenario(prefect_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    feed, ws, cfg = root / "feed", root / "ws", root / "lenient.yaml"
    cfg.write_text("embedding: {model: hashing, dim: 64}\nvalidation: {max_bad_fraction: 1.0}\n")
    feed.mkdir()
    for f in FILES:
        shutil.copy(HOSTILE / f, feed / _name(f))
    for name, did in ODD_NAMES.items():
        write_jsonl(feed / name, [{"id": did, "text": f"a batch file named {name!r}"}])
    with open(feed / "000033-huge.jsonl", "w", encoding="utf-8") as f:  # 10 MB of text, made here, not committed
        f.write(json.dumps({"id": "huge", "text": "word " * 2_000_000}) + "\n" + json.dumps({"id": "after-huge", "text": "small"}) + "\n")
    pages = Receiver()
    SECRETS["INDEXOPS_ALERT_WEBHOOK_URL"] = f"http://127.0.0.1:{pages.port}/services/T0/B0/{WEBHOOK_TOKEN}"
    env = dict(os.environ, PREFECT_API_URL=prefect_server, **SECRETS)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(CLI + list(args), capture_output=True, text=True, env=env, cwd=root, timeout=300)

    out = {"root": root, "feed": feed, "ws": ws, "procs": {}, "started": datetime.now(timezone.utc), "pages": pages}
    out["procs"]["first"] = cli("ingest", "--feed", str(feed), "--workspace", str(ws), "--config", str(cfg), "--json")
    # alerts wired to the planted secrets (by reference), so the failing run below pages through them
    ops = root / "operations.yaml"
    # SMTP to a closed loopback port: the send fails at once (an unresolvable host hangs in DNS here)
    email = {"kind": "email", "smtp_server": "127.0.0.1", "smtp_port": _closed_port(), "smtp_username": "alerts@example.invalid",
             "smtp_password": "env:INDEXOPS_SMTP_PASSWORD", "from_addr": "alerts@example.invalid", "to": ["data@example.invalid"]}
    ops.write_text(json.dumps({"feeds": [], "alerts": {
        "channels": {"oncall": [{"kind": "webhook", "url": "env:INDEXOPS_ALERT_WEBHOOK_URL"}], "owners": [email], "data_team": [email]},
        "nightly_stale": {"channel": "oncall", "enabled": False}, "ingest_stale": {"channel": "oncall", "enabled": False}}}))
    out["procs"]["alerts setup"] = cli("alerts", "setup", "--config", str(ops))

    # second run: a replayed batch under a new name, a late batch sorting before the cursor, an
    # applied batch rewritten in place, and last a Parquet file without an id column
    shutil.copy(feed / _name("dup_ids.jsonl"), feed / "000100-replay-of-dup_ids.jsonl")
    write_jsonl(feed / "000000-late.jsonl", [{"id": "dup", "text": "an older dup arriving late", "updated_at": "2025-12-31T00:00:00Z"},
                                             {"id": "late-new", "text": "a late batch still lands"}])
    write_jsonl(feed / _name("crlf.jsonl"), [{"id": "c1", "text": "rewritten after it was applied"}])
    shutil.copy(HOSTILE / "wrong_schema.parquet", feed / "000200-wrong_schema.parquet")
    out["procs"]["second"] = cli("ingest", "--feed", str(feed), "--workspace", str(ws), "--config", str(cfg))
    out["procs"]["quarantine"] = cli("quarantine", "list", "--workspace", str(ws), "--json")
    out["procs"]["reconcile"] = cli("reconcile", "--workspace", str(ws), "--config", str(cfg), "--json")
    out["report"] = root / "report"
    out["procs"]["report"] = cli("report", "--workspace", str(ws), "--out", str(out["report"]), "--config", str(cfg))
    yield out
    pages.close()
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_server}), get_client(sync_client=True) as c:
        for a in c.read_automations():
            if "indexops" in (a.tags or []):
                c.delete_automation(a.id)


def _ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:{p.stdout[-3000:]}\nstderr:{p.stderr[-3000:]}"
    return p.stdout


def _docs(scenario, ids):
    led = Ledger.for_workspace(scenario["ws"])
    try:
        return led.get_documents(ids)
    finally:
        led.close()


def test_every_hostile_line_gets_a_quarantine_row_with_its_reason(scenario):
    first = json.loads(_ok(scenario["procs"]["first"]))
    rows = json.loads(_ok(scenario["procs"]["quarantine"]))
    got = {(r["file"], r["line"]): r["reason"] for r in rows}
    expected = {
        ("malformed.jsonl", 2): "malformed JSON: Unterminated string",
        ("wrong_types.jsonl", 2): "text: Input should be a valid string",
        ("wrong_types.jsonl", 3): "not_be_null(id)",  # a list as id
        ("wrong_types.jsonl", 4): "metadata must be an object",
        ("wrong_types.jsonl", 5): "updated_at: Input should be a valid datetime",
        ("wrong_types.jsonl", 6): "not_be_null(id)",  # a boolean id
        ("wrong_types.jsonl", 7): "to_be_in_set(op",
        ("wrong_types.jsonl", 8): "text: Input should be a valid string",
        ("wrong_types.jsonl", 9): "title: Input should be a valid string",
        ("wrong_types.jsonl", 10): "to_be_in_set(op",  # an op that is a list
        ("wrong_types.jsonl", 11): "updated_at is out of range in UTC",
        ("wrong_types.jsonl", 12): "not_be_null(id)",  # a float id
        ("missing_ids.jsonl", 2): "not_be_null(id)",
        ("missing_ids.jsonl", 3): "not_be_null(id)",
        ("missing_ids.jsonl", 4): "lengths_to_be_between(id",
        ("missing_ids.jsonl", 5): "id: String should have at least 1 character",
        ("missing_ids.jsonl", 6): "not_be_null(id)",
        **{("empty_texts.jsonl", n): "text is required and non-empty" for n in range(2, 7)},
        ("invalid_utf8.jsonl", 2): "invalid UTF-8 at byte 26",
        ("nul.jsonl", 2): "Invalid control character",
        ("nul.jsonl", 3): "contains a NUL byte",
        ("nul.jsonl", 4): "contains a NUL byte",
        ("nul.jsonl", 5): "id contains a NUL byte",
        ("nested_metadata.jsonl", 2): "non-standard JSON constant NaN",
        ("nested_metadata.jsonl", 3): "metadata.a[0] holds a non-finite number",
        ("nested_metadata.jsonl", 4): "integer beyond 64 bits",
        ("nested_metadata.jsonl", 5): "JSON nested deeper than 64 levels",
        ("nested_metadata.jsonl", 6): "JSON nested deeper than 64 levels",
        ("nested_metadata.jsonl", 7): "non-standard JSON constant -Infinity",
        ("nested_metadata.jsonl", 8): "metadata is nested deeper than 32 levels",
        ("rows.csv", 3): "more fields than the header",
        ("rows.csv", 4): "metadata is not JSON",
        ("invalid_utf8.csv", 3): "invalid UTF-8",
        ("wrong_types.parquet", 2): "title: Input should be a valid string",
        ("wrong_types.parquet", 3): "metadata.price holds a Decimal",
    }
    want = {(_name(f), line): reason for (f, line), reason in expected.items()}
    want[("000033-huge.jsonl", 1)] = "lengths_to_be_between(text, min_value=0, max_value=2000000)"
    want[("000200-wrong_schema.parquet", 0)] = "has no 'id' column"
    assert set(got) == set(want), f"unexpected: {sorted(set(got) - set(want))}, missing: {sorted(set(want) - set(got))}"
    for key, reason in want.items():
        assert reason in got[key], (key, got[key])
    assert first["counts"]["quarantined"] == len(want) - 1  # all but the second run's Parquet
    assert first["counts"]["delete_unknown"] == 2


def test_good_records_land_beside_bad_ones(scenario):
    good = ["g1", "g2", "w0", "i0", "t0", "u1", "u3", "b1", "b2", "c2", "n1", "dup", "solo", "x0", "m1", "r1", "r4", "v1",
            "v3", "pq1", "after-huge", "late-new", *ODD_NAMES.values()]
    docs = _docs(scenario, good + ["huge", "never-seen", "m4", "pq3"])
    assert sorted(d for d in good if d not in docs or docs[d].status not in ("active", "duplicate")) == []
    assert not {"huge", "never-seen", "m4", "pq3"} & set(docs)
    assert docs["dup"].text == "third version of dup, the last one wins"  # last of an id in a batch wins
    assert docs["b1"].text == "with a bom" and docs["c2"].text == "two"  # no BOM, no CR in the values
    assert docs["m1"].metadata["a"]["b"]["c"][2] == {"d": "e"}
    assert _docs(scenario, ["pq1"])["pq1"].metadata == {"ts": "2026-01-02T03:04:05+00:00", "price": None}


def test_replayed_late_rewritten_and_unreadable_batches(scenario):
    second = scenario["procs"]["second"]
    assert second.returncode == 1
    err = [l for l in second.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "000200-wrong_schema.parquet" in err[0] and "no 'id' column" in err[0] and "nothing of this batch" in err[0]
    assert "000007-crlf.jsonl of feed feed changed after it was applied; it is NOT re-applied" in second.stderr
    docs = _docs(scenario, ["c1", "dup", "late-new"])
    assert docs["c1"].text == "one"  # the rewrite of an applied batch was not applied
    assert docs["dup"].text == "third version of dup, the last one wins"  # the replay and the late older version are stale
    assert docs["late-new"].status == "active"
    led = Ledger.for_workspace(scenario["ws"])
    try:
        applied = led.applied_files("feed")
        assert {"000000-late.jsonl", "000100-replay-of-dup_ids.jsonl", "000033-huge.jsonl"} <= set(applied)
        assert "000200-wrong_schema.parquet" not in applied
        assert led.cursor("feed")["last_file"] == "000100-replay-of-dup_ids.jsonl"  # stays before the bad file
    finally:
        led.close()


def test_no_traceback_and_the_index_is_consistent_afterwards(scenario):
    for name, p in scenario["procs"].items():
        assert "Traceback" not in p.stdout and "Traceback" not in p.stderr, name
    rep = json.loads(_ok(scenario["procs"]["reconcile"]))
    assert rep["ok"] and rep["found"]["ledger_chunks"] == rep["found"]["store_points"] > 20


def test_secrets_in_the_environment_reach_neither_workspace_nor_output_nor_prefect(scenario, prefect_api):
    needles = [*SECRETS.values(), WEBHOOK_TOKEN]
    texts = {f"{name}.{stream}": getattr(p, stream) for name, p in scenario["procs"].items() for stream in ("stdout", "stderr")}
    files = [f for f in sorted(scenario["ws"].rglob("*")) if f.is_file()]
    assert any(f.name == "ledger.db" for f in files) and any("collections" in f.parts for f in files)
    for f in files:  # every byte of every file, ledger and store alike
        data = f.read_bytes()
        for secret in needles:
            assert secret.encode() not in data, f"secret leaked into {f}"
    db = sqlite3.connect(scenario["ws"] / "ledger.db")
    texts["ledger.db dump"] = "\n".join(db.iterdump())
    db.close()
    texts.update(asyncio.run(prefect_texts(str(scenario["ws"]), scenario["started"], runs=2)))
    assert any(k.startswith("flow run") for k in texts) and any(k.startswith("logs") for k in texts)
    assert any(k.startswith("artifact") for k in texts)
    _ok(scenario["procs"]["alerts setup"])
    _ok(scenario["procs"]["report"])
    report_files = sorted(scenario["report"].glob("drift-report.*"))
    assert [f.suffix for f in report_files] == [".html", ".json"]
    for f in report_files:
        texts[f"report {f.name}"] = f.read_text()
    texts.update(_prefect_alert_objects())
    # the failing run paged through the planted secrets: wait until every alert action it caused has
    # finished (sent, or failed on the closed SMTP port), so the server log below holds the attempts
    finished = _finished_alert_actions(scenario["started"])
    assert "indexops: ingest failed or crashed" in finished, finished
    assert scenario["pages"].bodies, "the failing run's page never reached the webhook"
    texts["prefect server log"] = (Path(_PREFECT_HOME) / "server.log").read_text(errors="replace")
    for where, text in texts.items():
        for secret in needles:
            assert secret not in text, f"secret leaked into {where}"


def _finished_alert_actions(since: datetime, timeout: float = 120.0) -> list[str]:
    """The automations whose actions ran since `since`, once every triggered action has finished
    (executed or failed): Prefect emits `prefect.automation.action.triggered` with `.executed` or
    `.failed` after the action's attempt. A bounded wait on those events, not a sleep."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    deadline = time.time() + timeout
    with get_client(sync_client=True) as c:
        while True:  # a new filter each time: its `until` defaults to the moment it is made
            flt = EventFilter(occurred=EventOccurredFilter(since=since), event=EventNameFilter(prefix=["prefect.automation.action."]))
            events = c.read_events(flt, limit=50).events
            triggered = {e.id for e in events if e.event.endswith(".triggered")}
            done = [e for e in events if e.event.endswith((".executed", ".failed"))]
            if triggered and triggered <= {e.follows for e in done}:
                return sorted({e.resource.get("prefect.resource.name", e.resource.id) for e in done})
            assert time.time() < deadline, f"alert actions unfinished after {timeout:.0f} s: {[e.event for e in events]}"
            time.sleep(0.5)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound, never listened on, then closed: connecting is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect_alert_objects() -> dict[str, str]:
    """Automations and notification blocks as the API and UI show them (secret fields obfuscated)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        autos = [a for a in c.read_automations() if "indexops" in (a.tags or [])]
        blocks = [b for b in c.read_block_documents(include_secrets=False) if (b.name or "").startswith("indexops-")]
    assert autos and blocks
    return {"automations": json.dumps([a.model_dump(mode="json") for a in autos]),
            "notification blocks": json.dumps([b.model_dump(mode="json") for b in blocks])}
