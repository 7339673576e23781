"""Readers while the writer works, with real processes: RAG-app readers (`Index.open` + `search`)
and the evaluate flow keep answering while one writer applies delta after delta through the real
ingest flow, every answer comes whole from the one published snapshot it names, and readers move
on to each new snapshot by themselves. And a writer SIGKILLed in the middle of publishing leaves
readers on the previous snapshot; the next ingest clears the leftovers and publishes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexops.index import replicas
from indexops.ingest.driver import ingest_path
from indexops.ledger import Ledger
from indexops.index.context import open_index
from indexops.index.reader import Index, open_snapshot
from indexops.settings import load_settings
from indexops.index.snapshot import current_snapshot_id
from tests.conftest import REPO, write_jsonl

BIN = Path(sys.executable).parent
HASHING = REPO / "configs" / "hashing.yaml"
SEED = 20261205
WORDS = ("river mountain forest ocean cloud rain harbor lantern meadow canyon glacier desert orchard valley "
         "engine signal vector index ledger cursor replica shard segment payload commit snapshot feed batch "
         "quartz copper silver marble granite amber cobalt violet crimson scarlet indigo olive "
         "falcon heron otter badger lynx beaver walrus salmon sparrow raven").split()
STABLE = range(8)  # documents never updated or deleted: the evaluation's judged documents
N_BASE = 300
N_BATCHES = 20


# ---- feed -------------------------------------------------------------------------------------------


def _text(rng: random.Random, i: int, long: bool = False) -> str:
    n = rng.randint(30, 45) if long else rng.randint(2, 5)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "." for _ in range(n)]
    sentences[0] = f"Marker kw{i:05d}. " + sentences[0]  # one word only this document has
    return " ".join(sentences)


class Corpus:
    """The documents the feed holds, and the batches that change them (deterministic from SEED)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.live: dict[int, dict] = {}
        self.deleted: list[int] = []
        self.next_id = 0

    def doc(self, i: int, version: int = 1) -> dict:
        d = {"id": f"doc-{i:05d}", "title": f"Title {i} v{version}", "text": _text(self.rng, i, long=self.rng.random() < 0.15)}
        self.live[i] = d
        return d

    def base(self, n: int) -> list[dict]:
        rows = [self.doc(i) for i in range(n)]
        self.next_id = n
        return rows

    def delta(self, b: int) -> list[dict]:
        """Text updates, title-only updates (same chunk ids, new chunk hashes), deletes, inserts, a re-add."""
        rng = self.rng
        movable = sorted(i for i in self.live if i not in STABLE)
        picked = rng.sample(movable, 11)
        rows = [self.doc(i, version=b) for i in picked[:6]]
        for i in picked[6:8]:
            self.live[i] = {**self.live[i], "title": f"Title {i} retitled v{b}"}
            rows.append(self.live[i])
        for i in picked[8:]:
            del self.live[i]
            self.deleted.append(i)
            rows.append({"id": f"doc-{i:05d}", "op": "delete"})
        if len(self.deleted) > 3:
            rows.append(self.doc(self.deleted.pop(0), version=b))
        for _ in range(4):
            rows.append(self.doc(self.next_id, version=b))
            self.next_id += 1
        return rows


# ---- helpers ----------------------------------------------------------------------------------------


def _chunk_set(ws: Path, collection: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The ledger's current snapshot id, its chunks {chunk_id: chunk_hash} and {point_id: chunk_hash}."""
    led = Ledger.for_workspace(ws)
    try:
        sid = current_snapshot_id(led, collection)
        rows = [r for page in led.iter_chunks(collection) for r in page]
    finally:
        led.close()
    return sid, {r.chunk_id: r.chunk_hash for r in rows}, {r.point_id: r.chunk_hash for r in rows}


def _head_sid(ws: Path, collection: str) -> str | None:
    h = replicas.head(replicas.replicas_root(ws, collection))
    return h.snapshot_id if h else None


def _env(api: str | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if api:
        env["PREFECT_API_URL"] = api
    return env


def _cli(args: list[str], api: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(BIN / "indexops"), *args], cwd=REPO, env=_env(api), capture_output=True, text=True,
                              timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired as e:  # subprocess.run has killed it
        pytest.fail(f"`indexops {' '.join(args[:1])}` did not finish in {timeout:.0f} s\n{e.stdout}\n{e.stderr}")


def _answers(path: Path) -> list[dict]:
    """The complete lines a reader wrote so far."""
    if not path.exists():
        return []
    data = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in data[: data.rfind("\n") + 1].splitlines() if line.strip()]


def _stop(procs: list[subprocess.Popen], grace_s: float = 15.0) -> None:
    """Wait a little for each child we started, then SIGKILL any still running (by its pid)."""
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def _check_hits(ans: dict, chunks: dict[str, str], where: str) -> None:
    for chunk_id, doc_id, recomputed in ans["hits"]:
        assert chunk_id in chunks, f"{where}: hit {chunk_id} ({doc_id}) is not a chunk of snapshot {ans['snapshot_id'][:12]}"
        assert chunks[chunk_id] == recomputed, (
            f"{where}: hit {chunk_id} ({doc_id}) carries text/title of another version than snapshot "
            f"{ans['snapshot_id'][:12]} holds")


# ---- 1. soak: three readers and two evaluations while twenty ingests run ----------------------------

READER_QUERIES = ["river engine signal", "kw00003 lantern meadow", "falcon heron granite amber", "kw00005 copper"]
SOAK_BUDGET_S = 300  # hard ceiling for the soak's own part (~2 min on 2 idle cores; ~3 min when other work shares them)


@pytest.mark.slow
def test_readers_and_evaluations_follow_twenty_ingests_without_errors(prefect_server, tmp_path):
    t_start = time.monotonic()

    def left() -> float:
        remaining = SOAK_BUDGET_S - (time.monotonic() - t_start)
        assert remaining > 0, f"soak exceeded its {SOAK_BUDGET_S} s budget"
        return remaining

    ws, feed = tmp_path / "ws", tmp_path / "feed"
    corpus = Corpus(SEED)
    write_jsonl(feed / "batch-0001.jsonl", corpus.base(N_BASE))
    ingest_args = ["ingest", "--feed", str(feed), "--workspace", str(ws), "--config", str(HASHING), "--json"]

    snaps: dict[str, dict[str, str]] = {}  # snapshot id -> {chunk_id: chunk_hash}
    order: list[str] = []  # snapshot ids in the order the writer produced them

    def ingest_and_record(label: str) -> str:
        p = _cli(ingest_args, prefect_server, min(120.0, left()))
        assert p.returncode == 0, f"ingest {label} failed (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
        summary = json.loads(p.stdout)
        printed = summary["snapshot"]["snapshot_id"]
        coll = summary["snapshot"]["collection"]
        sid, chunks, _ = _chunk_set(ws, coll)
        assert printed == sid, f"ingest {label} printed {printed[:12]}, the ledger holds {sid[:12]}"
        assert _head_sid(ws, coll) == sid, f"ingest {label} returned before HEAD named its snapshot {sid[:12]}"
        pub = summary["snapshot"].get("published")
        assert pub and pub["snapshot_id"] == sid, f"ingest {label} published {pub}"
        assert snaps.setdefault(sid, chunks) == chunks, f"snapshot {sid[:12]} recorded with two different chunk sets"
        order.append(sid)
        return sid

    ingest_and_record("base")
    assert sum(len(c) for c in snaps.values()) > N_BASE, "no document spans several chunks: make some longer"

    # the evaluation's labeled queries: stable documents, found by their own words
    qdir = tmp_path / "queries"
    write_jsonl(qdir / "queries.jsonl", [{"_id": f"q{i}", "text": f"kw{i:05d} " + corpus.live[i]["text"].split(". ")[1]} for i in STABLE])
    (qdir / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\tdoc-{i:05d}\t1\n" for i in STABLE))
    eval_code = ("import json, sys\nfrom flows.evaluate import evaluate\n"
                 "r = evaluate(workspace=sys.argv[1], queries=sys.argv[2], qrels=sys.argv[3], config_path=sys.argv[4])\n"
                 "print('EVAL_RESULT ' + json.dumps({'snapshot_id': r['snapshot_id'], 'evals': r['evals']}, default=str))\n")

    stop = tmp_path / "stop"
    readers: list[subprocess.Popen] = []
    evals: list[tuple[subprocess.Popen, Path, Path]] = []
    logs = []
    try:
        for k in range(3):
            out = tmp_path / f"reader{k}.jsonl"
            args = [str(ws), str(HASHING), str(out), str(stop), READER_QUERIES[k:] + READER_QUERIES[:k]]
            err = open(tmp_path / f"reader{k}.log", "wb")
            logs.append(err)
            readers.append(subprocess.Popen(
                [sys.executable, "-c", "import json, sys\nfrom tests.integration._reader_child import reader\nreader(*json.loads(sys.argv[1]))",
                 json.dumps(args)], cwd=REPO, env=_env(), stdout=err, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + min(60.0, left())
        while not all(any("snapshot_id" in a for a in _answers(tmp_path / f"reader{k}.jsonl")) for k in range(3)):
            assert time.monotonic() < deadline, "readers did not answer within 60 s"
            for k, p in enumerate(readers):
                assert p.poll() is None, f"reader {k} exited: {(tmp_path / f'reader{k}.log').read_text()[-3000:]}"
            time.sleep(0.2)

        walls = []
        for b in range(2, N_BATCHES + 2):
            write_jsonl(feed / f"batch-{b:04d}.jsonl", corpus.delta(b))
            t = time.monotonic()
            ingest_and_record(f"batch {b}")
            walls.append(time.monotonic() - t)
            if b in (6, 14):  # the evaluate flow runs while the next ingests do
                so, se = tmp_path / f"eval{b}.out", tmp_path / f"eval{b}.err"
                with open(so, "wb") as fo, open(se, "wb") as fe:
                    evals.append((subprocess.Popen([sys.executable, "-c", eval_code, str(ws), str(qdir / "queries.jsonl"),
                                                    str(qdir / "qrels.tsv"), str(HASHING)], cwd=REPO, env=_env(prefect_server),
                                                   stdout=fo, stderr=fe), so, se))
        t_last = time.time()
        final = order[-1]

        # readers keep searching after the last ingest: each must answer a few times more (>= 2 s)
        deadline = time.monotonic() + min(30.0, left())
        while True:
            after = [[a for a in _answers(tmp_path / f"reader{k}.jsonl") if a["t0"] > t_last] for k in range(3)]
            if time.time() - t_last >= 2.0 and all(len(a) >= 5 for a in after):
                break
            assert time.monotonic() < deadline, f"readers answered {[len(a) for a in after]} times in 30 s after the last ingest"
            time.sleep(0.2)
        stop.touch()
        _stop(readers)
        for p, _, _ in evals:
            try:
                p.wait(min(120.0, left()))
            except subprocess.TimeoutExpired:
                pytest.fail("an evaluate run did not finish")
    finally:
        stop.touch()
        _stop(readers + [p for p, _, _ in evals], grace_s=5.0)
        for f in logs:
            f.close()

    # -- every ingest succeeded (asserted as they ran); the readers ------------------------------------
    assert len(order) == N_BATCHES + 1 and len(set(order)) == len(order), "an ingest produced no new snapshot"
    rank = {sid: n for n, sid in enumerate(order)}
    seen_by_reader = []
    total = 0
    for k, p in enumerate(readers):
        log = (tmp_path / f"reader{k}.log").read_text()
        assert p.returncode == 0 and "Traceback" not in log, f"reader {k} exited {p.returncode}:\n{log[-3000:]}"
        answers = _answers(tmp_path / f"reader{k}.jsonl")
        errors = [a for a in answers if "error" in a]
        assert not errors, f"reader {k}: {len(errors)} failed searches of {len(answers)}, first:\n{errors[0]['traceback']}"
        total += len(answers)
        for n, a in enumerate(answers):
            sid = a["snapshot_id"]
            assert sid in snaps, f"reader {k} answer {n} names {sid[:12]}, which no ingest produced"
            assert a["hits"], f"reader {k} answer {n} ({a['q']!r}, {a['retriever']}) has no hit"
            _check_hits(a, snaps[sid], f"reader {k} answer {n} ({a['retriever']})")
        ranks = [rank[a["snapshot_id"]] for a in answers]
        assert ranks == sorted(ranks), f"reader {k} went back to an older snapshot: {ranks}"
        late = [a for a in answers if a["t0"] > t_last]
        assert late and all(a["snapshot_id"] == final for a in late), (
            f"reader {k}: searches started after the last ingest named {sorted({a['snapshot_id'][:12] for a in late})}, "
            f"not the final snapshot {final[:12]}")
        assert answers[-1]["snapshot_id"] == final
        seen_by_reader.append(len(set(ranks)))
    assert all(n > 1 for n in seen_by_reader), f"a reader never followed a new snapshot: {seen_by_reader}"
    seen = {a["snapshot_id"] for k in range(3) for a in _answers(tmp_path / f"reader{k}.jsonl")}
    assert len(seen) >= N_BATCHES // 2, f"readers saw only {len(seen)} of {len(order)} snapshots"

    # -- the evaluations ran on published snapshots, mid-stream ---------------------------------------
    eval_sids = []
    for p, so, se in evals:
        out, err = so.read_text(), se.read_text()
        assert p.returncode == 0, f"evaluate failed (exit {p.returncode}):\n{out[-2000:]}\n{err[-5000:]}"
        (line,) = [l for l in out.splitlines() if l.startswith("EVAL_RESULT ")]
        res = json.loads(line.split(" ", 1)[1])
        assert res["snapshot_id"] in snaps, f"evaluate answered from {res['snapshot_id'][:12]}, which no ingest produced"
        eval_sids.append(res["snapshot_id"])
    assert len(eval_sids) == 2 and eval_sids[0] != final, eval_sids

    # -- the writer's shard still matches the ledger -----------------------------------------------------
    p = _cli(["reconcile", "--workspace", str(ws), "--config", str(HASHING)], prefect_server, 120.0)
    assert p.returncode == 0, f"reconcile found drift (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    print(f"\nsoak: {len(order)} ingests (wall per delta {min(walls):.1f}-{max(walls):.1f} s, sum {sum(walls):.0f} s), {total} answers by 3 readers, "
          f"snapshots seen per reader {seen_by_reader}, evaluations on {[s[:12] for s in eval_sids]}, "
          f"{time.monotonic() - t_start:.0f} s")


# ---- 2. a writer SIGKILLed in the middle of publishing ----------------------------------------------


def _kill_publish(ws: Path, feed: Path, after: int) -> list[str]:
    """Run the child ingest whose publish SIGKILLs itself after `after` copied files; returns them."""
    code = ("import sys\nfrom tests.integration._reader_child import publish_killer\n"
            "publish_killer(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))")
    try:
        p = subprocess.run([sys.executable, "-c", code, str(ws), str(feed), str(HASHING), str(after)], cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the publish-killing child did not finish in 120 s:\n{e.stderr}")
    assert p.returncode == -signal.SIGKILL, f"child did not die by SIGKILL (exit {p.returncode}):\n{p.stderr[-5000:]}"
    (line,) = [l for l in p.stderr.splitlines() if l.startswith('{"killing_after"')]
    copied = json.loads(line)["killing_after"]
    assert len(copied) == after and all("/.staging-" in c for c in copied), copied
    return copied


def _replica_points(ws: Path, settings, sid: str) -> dict[str, str]:
    ctx = open_snapshot(ws, settings, sid)
    try:
        assert ctx.snapshot_id == sid
        return {pid: p.get("chunk_hash") for pid, p in ctx.store.iter_points(["chunk_hash"])}
    finally:
        ctx.close()


def _answer(index: Index, chunks: dict[str, str], sid: str, where: str) -> None:
    from indexops.ids import chunk_hash

    for q in READER_QUERIES:
        ans = index.search(q, k=5)
        assert ans.snapshot_id == sid, f"{where}: answered from {ans.snapshot_id[:12]}, expected {sid[:12]}"
        assert ans.hits
        hits = [[h["chunk_id"], h["doc_id"], chunk_hash(h["text"] or "", h["title"] or "", {})] for h in ans.hits]
        _check_hits({"snapshot_id": ans.snapshot_id, "hits": hits}, chunks, where)


def test_writer_sigkilled_while_publishing_leaves_readers_on_the_previous_snapshot(tmp_path):
    """An ingest commits its batch and dies by SIGKILL while copying files into the new replica
    (twice: the second attempt clears the first one's staging directory and leaves its own).
    HEAD, the listed replicas and every reader stay on the previous snapshot, whole; the next
    ingest publishes the ledger's snapshot, leaves no staging directory, and readers move to it."""
    settings = load_settings(HASHING)
    ws, feed = tmp_path / "ws", tmp_path / "feed"
    corpus = Corpus(SEED + 1)
    write_jsonl(feed / "batch-0001.jsonl", corpus.base(120))
    ctx = open_index(ws, settings)
    try:
        ingest_path(ctx, feed, "delta")
        coll = ctx.collection
    finally:
        ctx.close()
    root = replicas.replicas_root(ws, coll)
    prev, prev_chunks, prev_points = _chunk_set(ws, coll)
    assert _head_sid(ws, coll) == prev

    before = Index.open(ws, HASHING)  # a reader that was already serving when the writer died
    try:
        _answer(before, prev_chunks, prev, "reader open before the crash")
        write_jsonl(feed / "batch-0002.jsonl", corpus.delta(2))

        # the writer commits batch 2 and dies while copying files into the new replica
        first = _kill_publish(ws, feed, 3)
        new, new_chunks, new_points = _chunk_set(ws, coll)
        assert new != prev, "the killed ingest did not commit its batch (the kill came too early to test publishing)"
        assert _head_sid(ws, coll) == prev, "HEAD moved to a replica whose publish was killed"
        staging = sorted(p.name for p in root.glob(".staging-*"))
        assert len(staging) == 1 and first[0].startswith(str(root / staging[0])), (staging, first)
        assert [r.snapshot_id for r in replicas.list_replicas(root)] == [prev], "a half-built replica is listed"
        _answer(before, prev_chunks, prev, "reader open before the crash, after it")
        with Index.open(ws, HASHING) as after:
            _answer(after, prev_chunks, prev, "reader opened after the crash")
        assert _replica_points(ws, settings, prev) == prev_points, "the previous replica changed under the crash"

        # a second publish attempt (nothing left to apply) dies too: it cleared the first one's leftovers
        second = _kill_publish(ws, feed, 1)
        staging2 = sorted(p.name for p in root.glob(".staging-*"))
        assert len(staging2) == 1 and staging2 != staging and second[0].startswith(str(root / staging2[0])), (staging, staging2)
        assert _head_sid(ws, coll) == prev

        # a normal ingest finishes: it publishes the committed snapshot and clears the leftovers
        ctx = open_index(ws, settings)
        try:
            summary = ingest_path(ctx, feed, "delta")
        finally:
            ctx.close()
        pub = summary["snapshot"]["published"]
        assert pub["snapshot_id"] == new and not pub["skipped"], pub
        assert _chunk_set(ws, coll)[0] == new
        assert _head_sid(ws, coll) == new, "HEAD does not name the ledger's snapshot after the recovery run"
        assert not [p.name for p in root.iterdir() if p.name.startswith((".staging-", ".trash-", f".{replicas.HEAD}."))], \
            sorted(p.name for p in root.iterdir())
        assert _replica_points(ws, settings, new) == new_points, "the new replica differs from the ledger"
        _answer(before, new_chunks, new, "reader open since before the crash, after the recovery")
        with Index.open(ws, HASHING) as after:
            _answer(after, new_chunks, new, "reader opened after the recovery")
    finally:
        before.close()
