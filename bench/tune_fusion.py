"""Choose the hybrid fusion defaults (RRF k, arm weights, prefetch) on a BEIR train split, over
an index already built by `indexops benchmark beir` (nothing is re-ingested).

    python bench/tune_fusion.py --workspace $(jq -r .workspace bench/results/beir_scifact_train.json)

`--tie-breaks` compares instead the secondary keys `indexops/store/fusion.py` can order tied RRF
scores by (each arm searched once per query, fused here with the configured k and weights),
against Qdrant's own fusion, both as it served (`qdrant-served`) and as eval reported it before
(re-sorted by score then doc id, `qdrant-resorted`).
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
    ap.add_argument("--tie-breaks", action="store_true", help="compare the tie-breaks of store/fusion.py instead")
    a = ap.parse_args()
    qs = beir_split(a.data, a.split)
    ctx = open_live(a.workspace, load_settings())
    if a.tie_breaks:
        return tie_breaks(ctx, qs, a.json)
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


def tie_breaks(ctx, qs, json_out: Path | None) -> None:
    from indexops.eval import metrics as M
    from indexops.eval.retrieval import DenseRetriever, best_per_document
    from indexops.store.fusion import TIE_BREAKS, rrf
    from indexops.store.protocol import DENSE, SPARSE

    r, k = ctx.settings.retrieval, 100
    limit = k * r.chunk_fanout
    depth = max(r.prefetch, limit)  # what eval at k = 100 fetched per arm before the fusion moved here
    weights = None if r.dense_weight == r.sparse_weight else [r.dense_weight, r.sparse_weight]
    vecs = DenseRetriever(ctx)._vectors(qs.queries)
    st, qe = ctx.store, ctx.store._qe
    runs: dict[str, dict] = {}
    ties = entries = 0
    for q, text in qs.queries.items():
        v, sp = vecs[q].tolist(), ctx.bm25.query(text)
        dense, sparse = st.search_dense(v, depth), st.search_sparse(sp, depth)
        pf = [qe.Prefetch(limit=depth, query=qe.Query.Nearest(v, using=DENSE))]
        if sp[0]:
            pf.append(qe.Prefetch(limit=depth, query=qe.Query.Nearest(qe.SparseVector(*sp), using=SPARSE)))
        fusion = qe.Fusion.Rrf(k=r.rrf_k, weights=weights if weights and len(pf) == 2 else None)
        served = best_per_document(st._hits(st._shard.query(qe.QueryRequest(limit=limit, prefetches=pf, query=fusion, with_payload=True))), k)
        runs.setdefault("qdrant-served", {})[q] = {h.payload["doc_id"]: h.score for h in served}
        resorted = sorted(runs["qdrant-served"][q].items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        runs.setdefault("qdrant-resorted", {})[q] = dict(resorted)
        top = [h.score for h in served[:10]]
        entries += len(top)
        ties += sum(1 for i, x in enumerate(top) if top.count(x) > 1)
        for name in TIE_BREAKS:
            for d, tag in ((r.prefetch, ""), (depth, f"@depth{depth}")):
                docs = best_per_document(rrf(dense[:d], sparse[:d], limit, k=r.rrf_k, weights=weights, tie_break=name), k)
                runs.setdefault(name + tag, {})[q] = {h.payload["doc_id"]: h.score for h in docs}
    rows = []
    print(f"{qs.name}: {len(qs)} queries; {ties / entries:.1%} of top-10 entries share their fused score with another", flush=True)
    for name, run in runs.items():
        m = M.evaluate(run, qs.qrels, ["ndcg@10", "recall@100"]).means
        rows.append({"tie_break": name, **m})
        print(f"{name:<28} ndcg@10 {m['ndcg@10']:.4f}  recall@100 {m['recall@100']:.4f}", flush=True)
    if json_out:
        json_out.write_text(json.dumps({"split": qs.name, "tied_top10_share": ties / entries, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
