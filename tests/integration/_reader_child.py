"""What tests/integration/test_concurrent_readers.py runs in its child processes.

`reader(...)`: a RAG app's read loop. It opens the index with `Index.open`, then searches a few
query strings (rotating the retrievers) until a stop file appears, writing one JSON line per answer:
when the search started and ended, the snapshot id the answer names, and per hit the chunk id,
document id and the chunk hash recomputed from the hit's own text and title (the feeds carry no
metadata, so `chunk_hash(text, title, {})` is what the ledger holds for that chunk). Every exception
is written as a line too (the loop goes on: the test counts them).

`publish_killer(...)`: one core-driver ingest (`ingest_path`) whose publish is SIGKILLed after it
copied `after` files into the replica's staging directory.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

RETRIEVERS = ("hybrid", "sparse", "dense")


def reader(workspace: str, config: str, out: str, stop: str, queries: list[str], pause_s: float = 0.1) -> None:
    from indexops.ids import chunk_hash
    from indexops.index.reader import Index

    index = None
    n = 0
    with open(out, "a", encoding="utf-8", buffering=1) as f:
        while not os.path.exists(stop):
            t0 = time.time()
            q, retriever = queries[n % len(queries)], RETRIEVERS[n % len(RETRIEVERS)]
            n += 1
            try:
                if index is None:
                    index = Index.open(workspace, config)
                ans = index.search(q, retriever=retriever, k=5)
                rec = {"t0": t0, "t1": time.time(), "q": q, "retriever": retriever, "snapshot_id": ans.snapshot_id,
                       "hits": [[h["chunk_id"], h["doc_id"], chunk_hash(h["text"] or "", h["title"] or "", {})] for h in ans.hits]}
            except Exception as e:  # noqa: BLE001 - every failure is a line the test counts
                rec = {"t0": t0, "t1": time.time(), "q": q, "retriever": retriever, "error": f"{type(e).__name__}: {e}",
                       "traceback": traceback.format_exc()[-3000:]}
            f.write(json.dumps(rec) + "\n")
            time.sleep(pause_s)
    if index is not None:
        index.close()


def publish_killer(workspace: str, feed: str, config: str, after: int) -> None:
    """Run `ingest_path` on `feed`; the publish dies by SIGKILL once it copied `after` files."""
    from indexops.index import replicas
    from indexops.ingest.driver import ingest_path
    from indexops.index.context import open_index
    from indexops.settings import load_settings

    real = replicas.copy_sparse
    copied: list[str] = []

    def copy_then_die(src, dst):
        n = real(src, dst)
        copied.append(str(dst))
        if len(copied) >= after:
            sys.stderr.write(json.dumps({"killing_after": copied}) + "\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return n

    replicas.copy_sparse = copy_then_die  # `_assemble` looks it up in the module at each call
    ctx = open_index(workspace, load_settings(config))
    try:
        summary = ingest_path(ctx, feed, "delta")
    finally:
        ctx.close()
    # reaching this line means the publish copied fewer than `after` files: the test fails on exit 3
    sys.stderr.write(json.dumps({"not_killed": summary["snapshot"].get("published"), "copied": copied}, default=str) + "\n")
    sys.exit(3)
