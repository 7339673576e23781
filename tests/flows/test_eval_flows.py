"""evaluate and nightly_regression flows under Prefect's test harness (hashing embedder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flows.evaluate import evaluate
from flows.ingest import ingest
from flows.nightly_regression import nightly_regression
from indexops.ledger import Ledger
from tests.conftest import REPO, write_jsonl

MINI = REPO / "tests" / "data" / "mini_beir"
Q, QRELS = str(MINI / "queries.jsonl"), str(MINI / "qrels" / "test.tsv")


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text(
        "embedding: {model: hashing, dim: 64}\n"
        "eval: {retrievers: [sparse, hybrid], floor: 0.0}\n"
        "regression: {resamples: 2000}\n"
    )
    return str(p)


@pytest.fixture
def feed(tmp_path):
    """The mini BEIR corpus as a delta feed, so later deltas can plant changes."""
    rows = [json.loads(l) for l in open(MINI / "corpus.jsonl")]
    f = tmp_path / "feed"
    write_jsonl(f / "000001-all.jsonl", [{"id": r["_id"], "title": r["title"], "text": r["text"]} for r in rows])
    return f, rows


def test_evaluate_publishes_and_fails_under_the_floor(tmp_path, cfg, feed):
    f, _ = feed
    ws = tmp_path / "ws"
    ingest(feed_path=str(f), workspace=str(ws), config_path=cfg)
    r = evaluate(workspace=str(ws), queries=Q, qrels=QRELS, config_path=cfg)
    assert {e["retriever"] for e in r["evals"]} == {"sparse", "hybrid"}
    assert len(Ledger.for_workspace(ws).list_evals()) == 2
    strict = tmp_path / "strict.yaml"
    strict.write_text(Path(cfg).read_text().replace("floor: 0.0", "floor: 0.99, floor_metric: ndcg@10"))
    with pytest.raises(Exception, match="below the floor"):
        evaluate(workspace=str(ws), queries=Q, qrels=QRELS, config_path=str(strict))


def test_nightly_regression_pins_then_passes_no_op_then_fails_planted_drop(tmp_path, cfg, feed):
    f, rows = feed
    ws = tmp_path / "ws"
    ingest(feed_path=str(f), workspace=str(ws), config_path=cfg)
    first = nightly_regression(workspace=str(ws), queries=Q, qrels=QRELS, config_path=cfg)
    assert all(v["summary"] == "baseline pinned by this run" for v in first["live"].values())

    noop = nightly_regression(workspace=str(ws), queries=Q, qrels=QRELS, config_path=cfg)
    assert noop["status"] == "pass"
    for v in noop["live"].values():
        for m in v["verdict"]["metrics"].values():
            assert m["comparison"]["mean_delta"] == 0

    # the planted regression: half of the corpus disappears
    write_jsonl(f / "000002-drop-half.jsonl", [{"id": r["_id"], "op": "delete"} for r in rows[::2]])
    ingest(feed_path=str(f), workspace=str(ws), config_path=cfg)
    with pytest.raises(Exception, match="nightly regression failed") as ei:
        nightly_regression(workspace=str(ws), queries=Q, qrels=QRELS, config_path=cfg)
    assert "lost relevant documents" in str(ei.value)


def test_candidate_recipe_is_built_gated_and_promoted(tmp_path, cfg, feed):
    f, _ = feed
    ws = tmp_path / "ws"
    ingest(feed_path=str(f), workspace=str(ws), config_path=cfg)
    nightly_regression(workspace=str(ws), queries=Q, qrels=QRELS, config_path=cfg)
    led = Ledger.for_workspace(ws)
    blue = led.alias()["collection"]

    # a recipe change that cannot alter rankings (the hashing embedder always normalises): passes, is promoted
    same = tmp_path / "same.yaml"
    same.write_text(Path(cfg).read_text().replace("dim: 64}", "dim: 64, normalize: false}"))
    r = nightly_regression(workspace=str(ws), queries=Q, qrels=QRELS, config_path=cfg, candidate_config_path=str(same), promote_on_pass=True)
    assert r["candidate"]["collection"] != blue and r["candidate"]["status"] == "pass"
    assert led.alias()["collection"] == r["candidate"]["collection"]
    assert "recipe changed" in r["candidate"]["reports"][0]["summary"]

    # a 2-dimensional hashing space makes the dense arm meaningless: the hybrid ranking degrades,
    # the gate does not pass, and nothing is promoted
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(cfg).read_text().replace("dim: 64}", "dim: 2}"))
    dense_only = tmp_path / "dense.yaml"  # gate the dense retriever, where 2 dimensions cannot rank
    dense_only.write_text(Path(cfg).read_text().replace("[sparse, hybrid]", "[dense]").replace("regression: {resamples: 2000}", "regression: {resamples: 2000, metrics: [ndcg@10, mrr@10]}"))
    before = led.alias()["collection"]
    r2 = nightly_regression(workspace=str(ws), queries=Q, qrels=QRELS, config_path=str(dense_only), candidate_config_path=str(bad), promote_on_pass=True)
    assert r2["candidate"]["status"] in ("warn", "fail"), r2["candidate"]
    assert led.alias()["collection"] == before
    shutil.rmtree(ws)
