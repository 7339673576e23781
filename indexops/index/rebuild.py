"""Blue/green rebuilds: a collection built from the documents already in the ledger, not from feeds."""

from __future__ import annotations

from indexops.index.context import IndexContext, compact_store
from indexops.ingest.plan import BatchPlan, _rewrite
from indexops.ingest.stages import chunk_batch, commit_batch, embed_chunks, write_store


def rebuild_batches(ctx: IndexContext, batch: int | None = None):
    """Plans that (re)chunk every active ledger document into this context's collection.

    Used for blue/green recipes: the new collection is built from the ledger, not from feeds.
    Resumable: chunks already in the collection are not embedded again.
    """
    n = batch or ctx.settings.ingest.batch_docs
    for rows in ctx.ledger.iter_active_documents(n):
        plan = BatchPlan(feed="__rebuild__", write_docs=False)
        for r in rows:
            plan.docs[r.doc_id] = _rewrite(r)
        plan.reindex = [r.doc_id for r in rows]
        plan.counts.received = len(rows)
        plan.counts.upserted = len(rows)
        yield plan


def rebuild_collection(ctx: IndexContext, run_id: str, batch: int | None = None) -> int:
    """Build (or finish building) this context's collection from the ledger; returns chunks embedded."""
    n = 0
    for plan in rebuild_batches(ctx, batch):
        cp = chunk_batch(ctx, plan, run_id)
        write_store(ctx, cp, embed_chunks(ctx, cp.to_embed))
        commit_batch(ctx, cp)
        compact_store(ctx)
        n += len(cp.to_embed)
    return n

