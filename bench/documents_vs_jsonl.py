"""The same corpus ingested as JSONL (a BEIR folder) and as a document tree retrieves the same.

SciFact written as Markdown files (`<id>.md`: the title as a `#` heading, the abstract as the body),
ingested with `--source documents`, against the BEIR corpus ingested as JSONL; every retriever is
evaluated on the train queries of both published snapshots (the tree's ids are `<id>.md`, so its
qrels name those). Prints and writes one JSON object.

    python bench/documents_vs_jsonl.py                         # whole ../shared/data/scifact, default recipe
    python bench/documents_vs_jsonl.py --config configs/hashing.yaml --limit 500   # quick
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"


def write_markdown_tree(corpus: Path, out: Path, limit: int | None = None, keep: set[str] | None = None) -> int:
    """One `<id>.md` per corpus line (`# title`, blank line, text); with `limit`, the first `limit`
    documents plus every id in `keep`. Returns the number written."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(corpus, encoding="utf-8") as f:
        for i, line in enumerate(f):
            d = json.loads(line)
            did = str(d["_id"])
            if limit is not None and i >= limit and did not in (keep or set()):
                continue
            (out / f"{did}.md").write_text(f"# {d.get('title') or did}\n\n{d.get('text') or ''}\n", encoding="utf-8")
            n += 1
    return n


def write_jsonl_subset(corpus: Path, out: Path, limit: int | None, keep: set[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(corpus, encoding="utf-8") as f, open(out / "corpus.jsonl", "w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if limit is None or i < limit or json.loads(line)["_id"] in keep:
                g.write(line)


def compare(data: Path, config: str | None, limit: int | None, split: str = "train", workspace: Path | None = None,
            max_queries: int | None = None) -> dict:
    """Ingest both ways and evaluate every retriever on both; the per-retriever nDCG@10 difference.
    `max_queries`: only the split's first N queries (and with `limit`, only their judged documents kept)."""
    from indexops.eval.evaluate import evaluate_snapshot
    from indexops.eval.queries import QuerySet, beir_split
    from indexops.eval.retrieval import RETRIEVERS
    from indexops.index.context import open_index
    from indexops.index.reader import reader_of
    from indexops.ingest.driver import ingest_path
    from indexops.settings import load_settings

    qs = beir_split(data, split)
    if max_queries is not None:
        first = sorted(qs.queries)[:max_queries]
        qs = QuerySet(name=qs.name, queries={q: qs.queries[q] for q in first}, qrels={q: qs.qrels[q] for q in first})
    root = workspace or Path(tempfile.mkdtemp(prefix="bench-docs-vs-jsonl-"))
    keep = {d for rel in qs.qrels.values() for d in rel}
    jsonl = root / "jsonl"
    write_jsonl_subset(data / "corpus.jsonl", jsonl, limit, keep)
    tree = root / "scifact-md"
    n = write_markdown_tree(data / "corpus.jsonl", tree, limit, keep)
    settings = load_settings(config)
    metrics = ["ndcg@10", "recall@100"]
    tree_qs = QuerySet(name=f"{qs.name}-md", queries=qs.queries, qrels={q: {f"{d}.md": g for d, g in rel.items()} for q, rel in qs.qrels.items()})
    out: dict = {"dataset": data.name, "split": split, "documents": n, "queries": len(qs), "config": config or "default",
                 "machine": platform.processor() or platform.machine(), "retrievers": {}, "ingest_s": {}}
    for label, folder, kind, queries in (("jsonl", jsonl, "beir", qs), ("documents", tree, "documents", tree_qs)):
        ctx = open_index(root / f"ws-{label}", settings)
        try:
            t0 = time.perf_counter()
            r = ingest_path(ctx, folder, kind, feed=f"scifact-{label}")
            out["ingest_s"][label] = round(time.perf_counter() - t0, 1)
            out.setdefault("chunks", {})[label] = r["snapshot"]["chunks"]
            reader = reader_of(ctx, r["snapshot"]["snapshot_id"])
            try:
                for name in RETRIEVERS:
                    o = evaluate_snapshot(reader, queries, name, metrics, store=False)
                    out["retrievers"].setdefault(name, {})[label] = {m: round(v, 4) for m, v in o.metrics.items()}
            finally:
                reader.close()
        finally:
            ctx.close()
    for name, both in out["retrievers"].items():
        both["ndcg@10_difference"] = round(both["documents"]["ndcg@10"] - both["jsonl"]["ndcg@10"], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--config", default=None, help="settings overlay (default: configs/default.yaml, the real model)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N documents plus every judged one")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "documents_vs_jsonl_scifact.json")
    a = ap.parse_args()
    res = compare(a.data, a.config, a.limit)
    res["command"] = "python bench/documents_vs_jsonl.py" + (f" --config {a.config}" if a.config else "") + (f" --limit {a.limit}" if a.limit else "")
    text = json.dumps(res, indent=2, sort_keys=True)
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
