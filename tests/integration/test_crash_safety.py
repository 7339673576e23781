"""Crash safety with real processes: an ingest killed with SIGKILL at a random moment, then re-run,
ends exactly where an uninterrupted run ends (ledger and store equal point for point, no
duplicate point, no lost document, the same snapshot id); and two ingests started together on
one index never interleave.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from indexops.index.context import open_index
from indexops.index.reconcile import reconcile
from indexops.index.snapshot import current_snapshot_id
from indexops.ledger import Ledger, documents
from indexops.settings import load_settings
from tests.conftest import REPO, write_jsonl
from tests.unit._helpers import assert_store_matches_ledger

SEED = 20261126
TRIALS = 20
CONFIG = (
    "embedding: {model: hashing, dim: 32}\n"
    # small chunks: documents span several chunks, so updates add and delete points
    "chunking: {strategy: recursive, max_tokens: 24, overlap_tokens: 4, include_title: true}\n"
    "ingest: {upsert_batch: 48}\n"  # several store writes per batch: kills land between them too
)
WORDS = ("index ledger vector store chunk batch feed snapshot query recall token model cosine sparse dense "
         "hybrid cursor replay commit crash signal worker segment payload filter search answer").split()


def _text(rng: random.Random, tag: str) -> str:
    sentences = []
    for _ in range(rng.randint(2, 6)):
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))).capitalize() + f" {tag}-{rng.randint(0, 10**6)}.")
    return " ".join(sentences)


def _doc(rng: random.Random, i: int, tag: str, **extra) -> dict:
    return {"id": f"doc-{i:04d}", "title": f"Title {i}", "text": _text(rng, tag), "metadata": {"n": i, "tag": tag},
            "updated_at": f"2026-01-0{1 + int(tag[-1])}T00:00:00Z", **extra}


def build_feed(root: Path, seed: int) -> Path:
    """Four batch files, 200 documents in 320 records: new ones, updates (text and metadata-only),
    deletes, re-adds, exact duplicates, deletes of unknown ids and one malformed line."""
    rng = random.Random(seed)
    feed = root / "feed"
    v1 = {i: _doc(rng, i, "v1") for i in range(200)}

    def gone(ids: range, day: int) -> list[dict]:
        return [{"id": f"doc-{i:04d}", "op": "delete", "updated_at": f"2026-01-0{day}T00:00:00Z"} for i in ids]

    write_jsonl(feed / "000001.jsonl", [v1[i] for i in range(80)])
    write_jsonl(feed / "000002.jsonl", [v1[i] for i in range(80, 130)] + [_doc(rng, i, "v2") for i in range(20)] + gone(range(20, 40), 3))
    with open(feed / "000002.jsonl", "a", encoding="utf-8") as f:
        f.write('{"id": "broken", "text": "unterminated\n')  # quarantined; the rest of the batch lands
    dups = [{**v1[i], "id": f"dup-{i:04d}"} for i in range(100, 105)]  # exact duplicates of kept documents
    readd = [_doc(rng, i, "v4") for i in range(20, 28)]
    write_jsonl(feed / "000003.jsonl", [v1[i] for i in range(130, 160)] + [_doc(rng, i, "v3") for i in range(40, 65)] + dups
                + gone(range(80, 88), 4) + readd)
    meta_only = [{**v1[i], "metadata": {"n": i, "tag": "v5"}, "updated_at": "2026-01-06T00:00:00Z"} for i in range(130, 155)]
    write_jsonl(feed / "000004.jsonl", [_doc(rng, i, "v4") for i in range(6)] + [{"id": f"ghost-{i}", "op": "delete"} for i in range(5)]
                + meta_only + [v1[i] for i in range(160, 200)])
    return feed


def _state(ws: Path, cfg: Path) -> dict:
    """Everything a finished ingest must agree on, after checking store == ledger point for point."""
    ctx = open_index(ws, load_settings(cfg))
    try:
        assert_store_matches_ledger(ctx)  # every point id and chunk hash, counts included
        rep = reconcile(ctx)
        assert rep.ok, rep.summary()
        pts = list(ctx.store.iter_points(["doc_id", "position"]))
        assert len(pts) == len({p for p, _ in pts}) == ctx.store.count()
        per_slot = Counter((v["doc_id"], v["position"]) for _, v in pts)
        assert max(per_slot.values(), default=1) == 1, "two points for one chunk slot of a document"
        with ctx.ledger.engine.connect() as c:
            docs = {r.doc_id: (r.status, r.version_hash, r.duplicate_of) for r in c.execute(sa.select(documents))}
        latest = ctx.ledger.latest_snapshot(ctx.collection)
        return {
            "docs": docs,
            "active": sorted(d for d, v in docs.items() if v[0] == "active"),
            "snapshot": current_snapshot_id(ctx.ledger, ctx.collection),
            "published": latest["snapshot_id"] if latest else None,
            "applied": ctx.ledger.applied_files("feed"),
            "quarantined": len(ctx.ledger.list_quarantine()),
            "points": len(pts),
        }
    finally:
        ctx.close()


def _stage(ws: Path, cfg: Path, n_files: int) -> str:
    """Where the kill landed, read from a copy of the workspace (the original stays untouched)."""
    if not (ws / "ledger.db").exists():
        return "before the ledger existed"
    probe = ws.with_name(ws.name + "-probe")
    # Edge preallocates 32 MiB WAL files that are mostly holes: keep them sparse
    subprocess.run(["cp", "-a", "--sparse=always", str(ws), str(probe)], check=True)
    try:
        ctx = open_index(probe, load_settings(cfg))
        try:
            applied = len(ctx.ledger.applied_files("feed"))
            published = ctx.ledger.latest_snapshot(ctx.collection) is not None
            drift = not reconcile(ctx, lock=False).found.clean
        finally:
            ctx.close()
    finally:
        shutil.rmtree(probe)
    if drift:
        return f"inside batch {applied + 1}: store written, ledger not committed"
    if applied < n_files:
        return f"between batches ({applied} of {n_files} committed)" if applied else "before the first commit"
    return "after the run" if published else "all batches committed, snapshot not published"


class Zygote:
    """The test's side of `_crash_child.serve`: start ingests in fresh children, kill them."""

    def __init__(self, log: Path) -> None:
        self._log = open(log, "wb")
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.integration._crash_child import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        self._buf = b""

    def start(self, ws: Path, feed: Path, cfg: Path) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"ws": str(ws), "feed": str(feed), "cfg": str(cfg)}) + "\n")
        self.proc.stdin.flush()
        return self._read(120)["pid"]

    def _read(self, timeout: float) -> dict | None:
        """The zygote's next message, or None after `timeout` s (own buffer: select sees the fd)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            assert chunk, f"zygote died: {self.log_path.read_text()[-3000:]}"
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def run(self, ws: Path, feed: Path, cfg: Path) -> float:
        """An ingest to completion; returns its wall time."""
        self.start(ws, feed, cfg)
        done = self._read(120)
        assert done is not None and done["exit"] == 0, f"ingest child failed: {done}\n{self.log_path.read_text()[-3000:]}"
        return done["wall_s"]

    def kill_after(self, ws: Path, feed: Path, cfg: Path, delay: float) -> bool:
        """An ingest SIGKILLed after `delay` seconds; False when it finished first."""
        pid = self.start(ws, feed, cfg)
        done = self._read(delay)
        if done is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # it finished and was reaped in the same instant
                pass
            done = self._read(30)
            assert done is not None, "killed child not reported"
        assert done["exit"] in (0, -signal.SIGKILL), f"ingest child failed: {done}\n{self.log_path.read_text()[-3000:]}"
        return done["exit"] == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def zygote(tmp_path):
    z = Zygote(tmp_path / "zygote.log")
    yield z
    z.close()


def test_sigkill_at_random_moments_then_rerun_equals_an_uninterrupted_run(zygote, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG)
    feed = build_feed(tmp_path, SEED)
    n_files = len(list(feed.iterdir()))

    # the reference, run twice: same final state, and the faster run calibrates the kill delays
    walls = [zygote.run(tmp_path / f"ref{k}", feed, cfg) for k in range(2)]
    ref = _state(tmp_path / "ref0", cfg)
    assert _state(tmp_path / "ref1", cfg) == ref
    assert len(ref["applied"]) == n_files and ref["published"] == ref["snapshot"] and ref["quarantined"] == 1
    assert 150 < len(ref["active"]) < 200 and ref["points"] > 2 * len(ref["active"])
    span = min(walls)

    rng = random.Random(SEED)
    stages: Counter[str] = Counter()
    log = []
    def inside() -> int:
        return sum(v for k, v in stages.items() if k.startswith(("inside", "between")))

    # kill delays are drawn from the reference's wall time, which the machine's load moves: trials go
    # on (at most twice as many) until enough kills landed inside the run, so coverage is not luck
    trial = -1
    while (trial := trial + 1) < TRIALS or (inside() < TRIALS // 4 and trial < 2 * TRIALS):
        ws = tmp_path / f"trial{trial:02d}"
        kills = 2 if rng.random() < 0.25 else 1  # sometimes the re-run is killed as well
        for _ in range(kills):
            delay = rng.uniform(0.0, 1.1 * span)
            hit = zygote.kill_after(ws, feed, cfg, delay)
            stage = _stage(ws, cfg, n_files) if hit else "after the run (child finished first)"
            stages[stage.split(" (")[0] if stage.startswith("between") else stage] += 1
            log.append({"trial": trial, "delay_s": round(delay, 3), "stage": stage})
        zygote.run(ws, feed, cfg)  # recovery in a fresh process
        got = _state(ws, cfg)
        assert got == ref, f"trial {trial} ({log[-1]}) differs from the uninterrupted run"
    report = {"trials": trial, "kills": len(log), "reference_wall_s": [round(w, 2) for w in walls], "stages": dict(stages), "log": log}
    (tmp_path / "crash-report.json").write_text(json.dumps(report, indent=2))
    print("\ncrash safety:", json.dumps({k: report[k] for k in ("trials", "kills", "reference_wall_s", "stages")}, indent=1))
    assert inside() >= TRIALS // 4, stages


# ---- two ingests of one index at once -------------------------------------------------------------


@pytest.fixture
def cli(prefect_server, tmp_path):
    env = dict(os.environ, PREFECT_API_URL=prefect_server)

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "indexops.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=tmp_path)

    return start


PER_FILE = 800


def _concurrency_feed(tmp_path: Path) -> tuple[Path, Path, Path]:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG)
    rng = random.Random(SEED)
    feed = tmp_path / "feed"
    for k in range(5):
        write_jsonl(feed / f"{k:06d}.jsonl", [_doc(rng, 1000 * k + i, "v1") for i in range(PER_FILE)])
    return cfg, feed, tmp_path / "ws"


def _applied(out: str) -> int:
    return int(out.split("applied ")[1].split(" ")[0])


def _check_applied_once(ws: Path, cfg: Path) -> None:
    led = Ledger.for_workspace(ws)
    try:
        assert len(led.applied_files("feed")) == 5
        assert len(led.doc_versions()) == 5 * PER_FILE
    finally:
        led.close()
    ctx = open_index(ws, load_settings(cfg))
    try:
        assert reconcile(ctx).ok
        assert_store_matches_ledger(ctx)
    finally:
        ctx.close()


def test_ingest_while_the_index_is_held_is_refused_or_waits(cli, tmp_path):
    """The index lock is held (as a running ingest holds it): an ingest without --wait exits 1 with
    one 'being ingested by <holder>' line and writes nothing; one with --wait stays until the
    holder lets go, then applies the whole feed."""
    cfg, feed, ws = _concurrency_feed(tmp_path)
    ctx = open_index(ws, load_settings(cfg))
    name = ctx.collection
    ctx.close()
    led = Ledger.for_workspace(ws)
    owner = led.acquire_lock(name)
    try:
        args = ["ingest", "--feed", str(feed), "--workspace", str(ws), "--config", str(cfg)]
        refused = cli(*args)
        waiter = cli(*args, "--wait", "120")
        rc, out, err = refused.wait(120), *refused.communicate()
        assert rc == 1 and "Traceback" not in out + err, (rc, out, err)
        lines = [l for l in err.splitlines() if l.startswith("error:")]
        assert len(lines) == 1 and "LedgerBusy" in lines[0] and f"is being ingested by {owner}" in lines[0], err
        assert led.applied_files("feed") == {}  # the refused one wrote nothing
        time.sleep(3.0)
        assert waiter.poll() is None, waiter.communicate()  # still waiting for the holder
    finally:
        led.release_lock(name, owner)
        led.close()
    rc, out, err = waiter.wait(300), *waiter.communicate()
    assert rc == 0 and "Traceback" not in out + err, (rc, out, err)
    assert _applied(out) == 5, out
    _check_applied_once(ws, cfg)


def test_ingests_started_together_never_interleave(cli, tmp_path):
    """Two CLI processes started together on one new workspace, and a third with --wait just
    after. Whoever gets the lock first applies the feed; the others are refused (exit 1, one
    'being ingested' line) or, finding it applied, apply nothing; the waiter never fails."""
    cfg, feed, ws = _concurrency_feed(tmp_path)
    args = ["ingest", "--feed", str(feed), "--workspace", str(ws), "--config", str(cfg)]
    procs = [cli(*args), cli(*args)]
    time.sleep(2.0)  # the waiter comes a little later, so it usually finds the winner at work
    procs.append(cli(*args, "--wait", "120"))
    outs = [(p.wait(300), *p.communicate()) for p in procs]
    for rc, out, err in outs:
        assert "Traceback" not in out + err
    applied = [_applied(out) if rc == 0 else None for rc, out, _ in outs]
    assert sorted(a for a in applied if a) == [5], outs  # one process applied every file
    assert all(a in (0, 5) for a in applied if a is not None), outs
    for rc, _, err in outs[:2]:
        if rc != 0:
            lines = [l for l in err.splitlines() if l.startswith("error:")]
            assert rc == 1 and len(lines) == 1 and "LedgerBusy" in lines[0] and "is being ingested by" in lines[0], err
    assert outs[2][0] == 0, outs[2]  # the waiter never fails; it applied 5 files or none
    print(f"\nconcurrency: files applied per process {applied} (None = refused; the last one had --wait)")
    _check_applied_once(ws, cfg)
