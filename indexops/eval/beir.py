"""`indexops benchmark beir`: ingest a BEIR corpus into a fresh workspace with the default
recipe, evaluate every retriever on a split, write JSON (and TREC run files)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from indexops.eval.evaluate import evaluate_snapshot
from indexops.eval.queries import beir_split
from indexops.eval.retrieval import RETRIEVERS
from indexops.index.context import open_index
from indexops.index.reader import reader_of
from indexops.ingest.driver import ingest_path
from indexops.settings import Settings


SCORE_STEP = 1e-6  # run files print 6 decimals


def trec_scores(scores: list[float]) -> list[float]:
    """Scores to print beside ranks 1, 2, ...: each the served score rounded to 6 decimals, lowered
    by `SCORE_STEP` where needed so they strictly decrease -- so trec_eval (which sorts by score, ties
    by doc id) ranks the file exactly as it is written, tied RRF scores included."""
    out: list[float] = []
    for s in scores:
        v = round(s, 6)
        if out and v > out[-1] - SCORE_STEP / 2:
            v = round(out[-1] - SCORE_STEP, 6)
        out.append(v)
    return out


def write_trec_run(path: Path, run: dict[str, dict[str, float]], name: str) -> None:
    """A TREC run file: each query's documents in the run's (served) order, scores strictly decreasing."""
    with open(path, "w", encoding="utf-8") as f:
        for q in sorted(run):
            docs = list(run[q])
            for rank, (d, s) in enumerate(zip(docs, trec_scores([run[q][d] for d in docs])), start=1):
                f.write(f"{q} Q0 {d} {rank} {s:.6f} {name}\n")


def run_beir(
    folder: str | Path,
    split: str,
    settings: Settings,
    ks: list[int] | None = None,
    retrievers: list[str] | None = None,
    run_dir: str | Path | None = None,
    workspace: str | Path | None = None,
) -> dict[str, Any]:
    """Ingest, evaluate, report.

    Returns:
        `{"dataset","split","snapshot_id","retrievers":{name:{metric:value}},"timings_s":{"ingest","eval",...}}`
    """
    folder = Path(folder)
    ks = ks or [10, 100]
    names = retrievers or list(RETRIEVERS)
    metric_names = sorted({f"ndcg@{k}" for k in ks} | {f"recall@{k}" for k in ks} | {f"mrr@{k}" for k in ks} | {"ndcg@10", "recall@10", "recall@100", "mrr@10", "map"})
    qs = beir_split(folder, split)
    ws = Path(workspace) if workspace else Path(tempfile.mkdtemp(prefix="indexops-beir-"))
    ctx = open_index(ws, settings)
    try:
        t0 = time.perf_counter()
        r = ingest_path(ctx, folder, "beir", feed=folder.name)
        t_ingest = time.perf_counter() - t0
        out: dict[str, Any] = {"dataset": folder.name, "split": split, "snapshot_id": r["snapshot"]["snapshot_id"],
                               "documents": r["snapshot"]["documents"], "chunks": r["snapshot"]["chunks"],
                               "queries": len(qs), "retrievers": {}, "timings_s": {"ingest": t_ingest}, "recipe": ctx.recipe}
        t_eval = 0.0
        reader = reader_of(ctx, r["snapshot"]["snapshot_id"])  # evaluate what readers are served: the published snapshot
        try:
            outcomes = {}
            for name in names:
                outcomes[name] = evaluate_snapshot(reader, qs, name, metric_names)
        finally:
            reader.close()
        for name in names:
            o = outcomes[name]
            out["retrievers"][name] = {**o.metrics, "seconds": o.seconds, "queries_per_s": len(qs) / o.seconds if o.seconds else None}
            out["timings_s"][f"eval_{name}"] = o.seconds
            t_eval += o.seconds
            if run_dir:
                rd = Path(run_dir)
                rd.mkdir(parents=True, exist_ok=True)
                write_trec_run(rd / f"{name}.trec", {q: dict(list(d.items())[:100]) for q, d in o.run.items()}, f"indexops-{name}")
        out["timings_s"]["eval"] = t_eval
        out["workspace"] = str(ws)
        return out
    finally:
        ctx.close()


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=True, default=str)
