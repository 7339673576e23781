"""A workspace with planted drift for the drift-report tests, built by the real ingest and eval
code with the hashing embedder (no Prefect): the mini BEIR corpus, a pinned eval, then a delta
that deletes half of it (a recall drop) and adds kitchen documents (another domain) — one of them
carrying markup and personal identifiers — and a query log with off-domain queries."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO, write_jsonl

MINI = REPO / "tests" / "data" / "mini_beir"
QUERIES, QRELS = MINI / "queries.jsonl", MINI / "qrels" / "test.tsv"
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src="x" onerror="window.__pwned=1">'
EMAIL, PHONE = "jane.doe@example.com", "+44 20 7946 0958"
CONFIG = "embedding: {model: hashing, dim: 64}\neval: {retrievers: [sparse], floor: 0.0}\nregression: {resamples: 500}\n" \
         "drift: {permutations: 199, bootstrap: 500}\n"

KITCHEN = ["pasta tomato basil garlic oven", "dough flour pizza cheese bake", "sauce onion pepper butter simmer",
           "salad knife recipe olive lemon", "bread yeast crust knead proof", "soup stock carrot celery leek",
           "grill steak marinade smoke rub"]


def write_config(tmp_path: Path) -> Path:
    p = tmp_path / "drift-cfg.yaml"
    p.write_text(CONFIG)
    return p


def build_workspace(tmp_path: Path) -> dict[str, Path]:
    """Returns {"workspace", "config", "query_log"}."""
    from indexops.eval.evaluate import evaluate_snapshot
    from indexops.eval.queries import load_query_set
    from indexops.index.context import open_index
    from indexops.ingest.driver import ingest_path
    from indexops.settings import load_settings

    cfg = write_config(tmp_path)
    settings = load_settings(cfg)
    rows = [json.loads(l) for l in open(MINI / "corpus.jsonl", encoding="utf-8")]
    feed, ws = tmp_path / "feed", tmp_path / "ws"
    write_jsonl(feed / "000001-all.jsonl", [{"id": r["_id"], "title": r["title"], "text": r["text"]} for r in rows])
    qs = load_query_set(QUERIES, QRELS)
    ctx = open_index(ws, settings)
    try:
        ingest_path(ctx, feed, "delta")
        ctx.ledger.pin_eval(evaluate_snapshot(ctx, qs, "sparse", settings.eval.metrics).eval_id)
    finally:
        ctx.close()
    new = [{"id": f"kitchen-{i}", "title": "Kitchen notes", "text": " ".join([k] * 6) + "."} for i, k in enumerate(KITCHEN)]
    new[0]["text"] = f"Hostile note {SCRIPT} and {IMG} from {EMAIL}, call {PHONE}. " + new[0]["text"]
    write_jsonl(feed / "000002-drift.jsonl", [{"id": r["_id"], "op": "delete"} for r in rows[::2]] + new)
    ctx = open_index(ws, settings)
    try:
        ingest_path(ctx, feed, "delta")
        evaluate_snapshot(ctx, qs, "sparse", settings.eval.metrics)
    finally:
        ctx.close()
    labeled = [json.loads(l)["text"] for l in open(QUERIES, encoding="utf-8")]
    log = [{"query": q, "timestamp": "2026-11-20T10:00:00Z"} for q in labeled[:8]]
    log += [{"query": f"{k} question, reply to {EMAIL} or {PHONE}", "timestamp": "2026-11-21T10:00:00Z"} for k in KITCHEN]
    qlog = write_jsonl(tmp_path / "queries.log.jsonl", log)
    return {"workspace": ws, "config": cfg, "query_log": qlog}
