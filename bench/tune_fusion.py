"""Choose the hybrid fusion defaults (RRF k, arm weights, prefetch) on a BEIR train split, over
an index already built by `indexops benchmark beir` (nothing is re-ingested).

    python bench/tune_fusion.py --workspace $(jq -r .workspace bench/results/beir_scifact_train.json)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from indexops.eval.evaluate import evaluate_snapshot
    from indexops.eval.queries import beir_split
    from indexops.index.reader import open_live
    from indexops.settings import load_settings

    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    ap.add_argument("--split", default="train")
    ap.add_argument("--rrf-k", default="20,60,100")
    ap.add_argument("--weights", default="1:1,1:2,2:1")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    qs = beir_split(a.data, a.split)
    ctx = open_live(a.workspace, load_settings())
    rows = []
    for k, w in itertools.product([int(x) for x in a.rrf_k.split(",")], a.weights.split(",")):
        dw, sw = (float(x) for x in w.split(":"))
        ctx.settings.retrieval.rrf_k, ctx.settings.retrieval.dense_weight, ctx.settings.retrieval.sparse_weight = k, dw, sw
        o = evaluate_snapshot(ctx, qs, "hybrid", ["ndcg@10", "recall@100"], store=False)
        rows.append({"rrf_k": k, "dense_weight": dw, "sparse_weight": sw, **o.metrics})
        print(f"rrf_k {k:<4} weights dense {dw} sparse {sw}  ndcg@10 {o.metrics['ndcg@10']:.4f}  recall@100 {o.metrics['recall@100']:.4f}", flush=True)
    ctx.close()
    best = max(rows, key=lambda r: r["ndcg@10"])
    print(f"best on {qs.name}: {best}")
    if a.json:
        a.json.write_text(json.dumps({"split": qs.name, "rows": rows, "best": best}, indent=2))


if __name__ == "__main__":
    main()
