"""Choose the BM25 defaults by measurement on a BEIR *train* split (never on the test figures we
are compared with). The sparse vectors do not depend on the dense model, so each setting is
ingested with the hashing embedder: one grid point costs seconds, not minutes.

    python bench/tune_sparse.py                       # ../shared/data/scifact, split train
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from indexops.eval.evaluate import evaluate_snapshot
    from indexops.eval.queries import beir_split
    from indexops.index.context import open_index
    from indexops.ingest.driver import ingest_path
    from indexops.settings import load_settings

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    ap.add_argument("--split", default="train")
    ap.add_argument("--k1", default="0.9,1.2")
    ap.add_argument("--b", default="0.75,0.9")
    ap.add_argument("--avg-len", default="128,256")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    qs = beir_split(a.data, a.split)
    from indexops.embed.factory import make_embedder
    from indexops.ingest.chunking import Chunker

    real_tok = make_embedder("all-MiniLM-L6-v2").tokenizer()
    rows = []
    grid = list(itertools.product([float(x) for x in a.k1.split(",")], [float(x) for x in a.b.split(",")], [float(x) for x in a.avg_len.split(",")]))
    for k1, b, avg in grid:
        s = load_settings(overrides={"embedding": {"model": "hashing", "dim": 8}, "bm25": {"k1": k1, "b": b, "avg_len": avg}, "dedupe": {"near": False}})
        ctx = open_index(Path(tempfile.mkdtemp(prefix="tune-")), s)
        # chunk boundaries as the real model's tokenizer draws them, so the sparse index matches
        ctx.chunker = Chunker(s.chunking, real_tok, tokenizer_id="tune")
        t = time.perf_counter()
        ingest_path(ctx, a.data, "beir")
        o = evaluate_snapshot(ctx, qs, "sparse", ["ndcg@10", "recall@100"], store=False)
        ctx.close()
        rows.append({"k1": k1, "b": b, "avg_len": avg, **o.metrics, "seconds": time.perf_counter() - t})
        print(f"k1 {k1:<4} b {b:<4} avg_len {avg:<5}  ndcg@10 {o.metrics['ndcg@10']:.4f}  recall@100 {o.metrics['recall@100']:.4f}", flush=True)
    best = max(rows, key=lambda r: r["ndcg@10"])
    print(f"best on {qs.name}: {best}")
    print(f"command: python bench/tune_sparse.py --k1 {a.k1} --b {a.b} --avg-len {a.avg_len}")
    if a.json:
        a.json.write_text(json.dumps({"split": qs.name, "rows": rows, "best": best}, indent=2))


if __name__ == "__main__":
    main()
