"""The `indexops` CLI end to end, in subprocesses, against the session's Prefect server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, write_jsonl

SAMPLE = REPO / "indexops" / "sample_data" / "feed"
CLI = [sys.executable, "-m", "indexops.cli"]


@pytest.fixture
def run(prefect_server, tmp_path):
    env = dict(os.environ, PREFECT_API_URL=prefect_server)

    def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(CLI + list(args), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        if check and p.returncode != 0:
            raise AssertionError(f"exit {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}")
        return p

    return _run


def test_help_on_every_command(run):
    for cmd in ([], ["ingest"], ["quarantine", "list"], ["snapshot", "show"], ["snapshot", "list"], ["snapshot", "diff"], ["duplicates", "list"], ["runs", "list"]):
        out = run(*cmd, "--help").stdout
        assert "Usage" in out


# README "Worked example": the counts (model-independent: the hashing embedder gives the same ones)
README_COUNTS = [
    "  received 22, indexed 20, deleted 0, unchanged 0, stale 0, exact dup 1, near dup 1, promoted 0, quarantined 0, chunks embedded 20",
    "  received 6, indexed 3, deleted 1, unchanged 0, stale 1, exact dup 0, near dup 0, promoted 1, quarantined 1, chunks embedded 4",
]


def test_worked_example_feed_ingest_snapshot(run, tmp_path):
    feed, ws = tmp_path / "feeds" / "helpcenter", tmp_path / "ws"
    feed.mkdir(parents=True)
    demo_cfg = tmp_path / "cfg.yaml"  # configs/demo.yaml's validation threshold on the hashing embedder
    demo_cfg.write_text("embedding:\n  model: hashing\n  dim: 64\nvalidation:\n  max_bad_fraction: 0.25\n")
    files = sorted(SAMPLE.iterdir())
    assert [f.name for f in files] == ["000001-initial.jsonl", "000002-updates.jsonl", "000003-cleanup.jsonl"]
    ids = []
    for i, f in enumerate(files):
        shutil.copy(f, feed / f.name)
        out = run("ingest", "--feed", str(feed), "--workspace", str(ws), "--config", str(demo_cfg)).stdout.splitlines()
        show = json.loads(run("snapshot", "show", "--workspace", str(ws), "--json").stdout)
        assert {"snapshot_id", "documents", "chunks", "recipe", "parent", "cursors"} <= set(show)
        assert show["cursors"]["helpcenter"]["last_file"] == f.name
        assert out[-1].startswith(f"snapshot {show['snapshot_id']}  ({show['documents']} documents, {show['chunks']} chunks)")
        if i < len(README_COUNTS):
            assert out[:2] == ["feed helpcenter: applied 1 file(s)", README_COUNTS[i]]
            assert (show["documents"], show["chunks"]) == ((20, 20), (22, 22))[i]
        if i == 1:
            assert (show["duplicates"], show["deleted"], show["parent"]) == (1, 1, ids[0])
            dups = run("duplicates", "list", "--workspace", str(ws)).stdout.split()
            assert dups == ["kb-101", "exact", "duplicate", "of", "kb-001", "(similarity", "1.00)"]
        ids.append(show["snapshot_id"])
    assert len(set(ids)) == 3
    listed = json.loads(run("snapshot", "list", "--workspace", str(ws), "--json").stdout)
    assert [s["snapshot_id"] for s in listed] == ids
    diff = json.loads(run("snapshot", "diff", ids[0], ids[-1], "--workspace", str(ws), "--json").stdout)
    assert "kb-001" in diff["removed"] and "kb-004" in diff["changed"] and "kb-021" in diff["added"]
    q = json.loads(run("quarantine", "list", "--workspace", str(ws), "--json").stdout)
    assert [(r["file"], r["line"]) for r in q] == [("000002-updates.jsonl", 6)]
    assert "not_be_null(id)" in q[0]["reason"]
    runs = json.loads(run("runs", "list", "--workspace", str(ws), "--json").stdout)
    assert [r["status"] for r in runs] == ["completed"] * 3


def test_failure_is_one_clear_paragraph_without_traceback(run, tmp_path):
    feed = tmp_path / "feed"
    write_jsonl(feed / "000001-bad.jsonl", [{"title": "no id", "text": "t"}, {"id": "a", "text": "ok"}])
    p = run("ingest", "--feed", str(feed), "--workspace", str(tmp_path / "ws"), "--config", str(REPO / "configs" / "hashing.yaml"), check=False)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "000001-bad.jsonl" in err[0] and "threshold" in err[0]


def test_bad_arguments_exit_2(run, tmp_path):
    p = run("ingest", "--feed", str(tmp_path / "missing"), "--workspace", str(tmp_path / "ws"), check=False)
    assert p.returncode == 2 and "does not exist" in p.stderr
    p = run("snapshot", "show", "--workspace", str(tmp_path / "nowhere"), check=False)
    assert p.returncode == 1 and "does not exist" in p.stderr


def test_eval_search_promote_rollback_and_beir_benchmark(run, tmp_path):
    mini = REPO / "tests" / "data" / "mini_beir"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("embedding: {model: hashing, dim: 64}\neval: {floor: 0.0}\n")
    ws = tmp_path / "ws"
    run("ingest", "--feed", str(mini), "--workspace", str(ws), "--config", str(cfg))
    out = run("eval", "--workspace", str(ws), "--queries", str(mini / "queries.jsonl"), "--qrels", str(mini / "qrels" / "test.tsv"),
              "--config", str(cfg), "-r", "bm25", "-r", "sparse", "--json", str(tmp_path / "eval.json")).stdout
    assert "bm25" in out and "ndcg@10" in out
    evals = json.loads((tmp_path / "eval.json").read_text())
    assert [e["retriever"] for e in evals] == ["bm25", "sparse"] and "per_query" in evals[0] and "definitions" in evals[0]

    ans = json.loads(run("search", "insulin glucose diabetes", "--workspace", str(ws), "--config", str(cfg), "--k", "3", "--json").stdout)
    assert len(ans["hits"]) == 3 and len(ans["snapshot_id"]) == 64 and ans["retriever"] == "hybrid"

    strict = tmp_path / "strict.yaml"
    strict.write_text("embedding: {model: hashing, dim: 64}\neval: {floor: 0.999, floor_metric: ndcg@10}\n")
    p = run("eval", "--workspace", str(ws), "--queries", str(mini / "queries.jsonl"), "--qrels", str(mini / "qrels" / "test.tsv"),
            "--config", str(strict), "-r", "sparse", check=False)
    assert p.returncode == 1 and "below the floor" in p.stderr

    p = run("rollback", "--workspace", str(ws), check=False)
    assert p.returncode == 1 and "nothing to roll back" in p.stderr
    p = run("promote", "deadbeef", "--workspace", str(ws), check=False)
    assert p.returncode == 1 and "unknown snapshot" in p.stderr

    res = tmp_path / "beir.json"
    run("benchmark", "beir", str(mini), "--split", "test", "--k", "10,100", "--json", str(res), "--run-dir", str(tmp_path / "runs"), "--config", str(cfg))
    r = json.loads(res.read_text())
    assert {"dataset", "split", "snapshot_id", "retrievers", "timings_s"} <= set(r)
    assert set(r["retrievers"]) == {"bm25", "sparse", "dense", "hybrid"}
    assert {"ndcg@10", "recall@10", "recall@100", "mrr@10"} <= set(r["retrievers"]["hybrid"])
    assert {"ingest", "eval"} <= set(r["timings_s"])
    trec = (tmp_path / "runs" / "hybrid.trec").read_text().splitlines()
    assert trec and len(trec[0].split()) == 6
