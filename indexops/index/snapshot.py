"""Snapshot ids and manifests: a content address for exactly what the index holds.

snapshot id = sha256 over (the multiset of (chunk id, chunk content hash), chunk count, recipe).
The multiset is kept as a running sum of per-chunk hashes mod 2^256, so each batch updates it in
O(batch) and any arrival order of the same final content yields the same id.
"""

from __future__ import annotations

from typing import Any

import indexops
from indexops.index import replicas
from indexops.index.context import IndexContext, snapshot_id_for
from indexops.ledger import Ledger, multiset_term
from indexops.store.protocol import StoredInFiles


def served_snapshot_id(ctx: IndexContext) -> str:
    """The snapshot a context answers from: a reader's published one, else the collection's current content."""
    return ctx.snapshot_id or current_snapshot_id(ctx.ledger, ctx.collection)


def current_snapshot_id(ledger: Ledger, collection: str) -> str:
    st = ledger.state(collection)
    if st is None:
        raise LookupError(f"no index state for collection {collection!r}")
    return snapshot_id_for(st["acc"], st["chunks"], st["recipe"])


def recount_accumulator(ledger: Ledger, collection: str) -> tuple[int, int]:
    """(multiset sum, chunk count) from a full scan of the chunk table, streamed page by page."""
    acc = 0
    n = 0
    for rows in ledger.iter_chunks(collection):
        for r in rows:
            acc += multiset_term(r.chunk_id, r.chunk_hash)
            n += 1
    return acc, n


def recompute_snapshot_id(ledger: Ledger, collection: str) -> str:
    """The same id from a full scan of the chunk table (a check on the running sum)."""
    st = ledger.state(collection)
    if st is None:
        raise LookupError(f"no index state for collection {collection!r}")
    acc, n = recount_accumulator(ledger, collection)
    return snapshot_id_for(acc, n, st["recipe"])


def publish_snapshot(ctx: IndexContext, run_id: str | None) -> dict[str, Any]:
    """Name the index's current content and record the manifest (no new row when unchanged)."""
    ledger = ctx.ledger
    sid = current_snapshot_id(ledger, ctx.collection)
    prev = ledger.latest_snapshot(ctx.collection)
    counts = ledger.document_counts()
    st = ledger.state(ctx.collection)
    manifest = {
        "snapshot_id": sid,
        "parent": None if prev is None else (prev["parent"] if prev["snapshot_id"] == sid else prev["snapshot_id"]),
        "collection": ctx.collection,
        "documents": counts.get("active", 0),
        "duplicates": counts.get("duplicate", 0),
        "deleted": counts.get("deleted", 0),
        "chunks": st["chunks"] if st else 0,
        "recipe": ctx.recipe,
        "cursors": ledger.all_cursors(),
        "ledger_version": ledger.ledger_version(),
        "store": {"backend": ctx.settings.store.backend},
        "indexops_version": indexops.__version__,
    }
    created = ledger.record_snapshot(ctx.collection, sid, run_id, manifest)
    manifest["new"] = created
    published = publish_for_readers(ctx, sid)
    if published is not None:
        manifest["published"] = published
    return manifest


def publish_for_readers(ctx: IndexContext, snapshot_id: str | None = None, force: bool = False) -> dict[str, Any] | None:
    """Publish the writer's shard as a read replica of its snapshot (Qdrant Edge; a server back end
    serves readers itself: None). The caller holds the index's writer lock. `force`: publish the
    same snapshot again (its files were rewritten: a repair, an optimize)."""
    if ctx.settings.store.backend != "edge" or ctx.snapshot_id is not None:
        return None
    sv = ctx.settings.serving
    sid = snapshot_id or current_snapshot_id(ctx.ledger, ctx.collection)
    live = ctx.ledger.alias("live")
    keep = frozenset({live["snapshot_id"]}) if live and live.get("pinned") and live["collection"] == ctx.collection else frozenset()
    store = ctx.store
    if not isinstance(store, StoredInFiles):
        raise TypeError(f"store {type(store).__name__} has no files to publish for readers")
    store.flush()
    rep = replicas.publish(store.path, ctx.workspace, ctx.collection, sid, retention=sv.retention, keep=keep,
                           share_files=sv.share_files, verify_links=sv.verify_links, force=force)
    return rep.to_dict()


def diff_snapshots(ledger: Ledger, a: str, b: str) -> dict[str, Any]:
    """Documents added, changed and removed from snapshot `a` to snapshot `b` (ids or prefixes)."""
    sa, sb = ledger.get_snapshot(a), ledger.get_snapshot(b)
    if sa is None or sb is None:
        missing = a if sa is None else b
        raise LookupError(f"unknown snapshot {missing!r}; `indexops snapshot list` shows the known ones")
    va = ledger.doc_versions_at(int(sa.get("ledger_version", 0)))
    vb = ledger.doc_versions_at(int(sb.get("ledger_version", 0)))
    added = sorted(set(vb) - set(va))
    removed = sorted(set(va) - set(vb))
    changed = sorted(d for d in set(va) & set(vb) if va[d] != vb[d])
    recipe_changed = sa.get("recipe") != sb.get("recipe")
    return {
        "from": sa["snapshot_id"],
        "to": sb["snapshot_id"],
        "added": added,
        "changed": changed,
        "removed": removed,
        "counts": {"added": len(added), "changed": len(changed), "removed": len(removed)},
        "recipe_changed": recipe_changed,
    }
