"""Stage 1 of a batch: decide per document (unchanged, stale, deleted, duplicate, or (re)index)
against the ledger, with exact and near-duplicate detection; nothing is written yet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from indexops.ids import normalize_text, sha256_hex, version_hash
from indexops.index.context import IndexContext
from indexops.ingest.dedupe import BatchBuckets, Signature
from indexops.ledger import DocRow, DocWrite
from indexops.models import BatchCounts, FeedRecord


@dataclass
class BatchPlan:
    feed: str
    docs: dict[str, DocWrite] = field(default_factory=dict)  # rows to write
    reindex: list[str] = field(default_factory=list)  # active after the batch and needing chunks
    old_active: set[str] = field(default_factory=set)  # active before, whose chunks get diffed
    touched_updated_at: dict[str, Any] = field(default_factory=dict)
    counts: BatchCounts = field(default_factory=BatchCounts)
    write_docs: bool = True  # False when rebuilding a collection from documents already in the ledger


def last_record_wins(records: Sequence[FeedRecord]) -> list[FeedRecord]:
    """Inside one batch the last record of an id wins."""
    by_id: dict[str, FeedRecord] = {}
    for r in records:
        by_id.pop(r.id, None)
        by_id[r.id] = r
    return list(by_id.values())


def plan_batch(ctx: IndexContext, records: Sequence[FeedRecord], feed: str, snapshot_deletes: Sequence[str] = ()) -> BatchPlan:
    """Decide per document: unchanged, stale, deleted, duplicate, or (re)index.

    Args:
        records: validated records of one batch (any order; last of an id wins).
        feed: the feed the batch belongs to.
        snapshot_deletes: ids a full-snapshot source no longer contains.

    Returns:
        The plan; nothing is written yet.
    """
    plan = BatchPlan(feed=feed)
    recs = last_record_wins(records)
    for did in snapshot_deletes:
        recs.append(FeedRecord(id=did, op="delete"))
    plan.counts.received = len(records)
    existing = ctx.ledger.get_documents([r.id for r in recs])

    candidates: dict[str, DocWrite] = {}
    norms: dict[str, str] = {}  # normalised texts: the exact hash and the MinHash read the same form
    leaving: set[str] = set()  # active docs whose current content stops being the kept copy

    for r in recs:
        old = existing.get(r.id)
        if old and old.updated_at and r.updated_at and r.updated_at < old.updated_at:
            plan.counts.stale += 1
            continue
        if r.op == "delete":
            if old is None or old.status == "deleted":
                plan.counts.delete_unknown += 1
                continue
            plan.counts.deleted += 1
            if old.status == "active":
                leaving.add(r.id)
                plan.old_active.add(r.id)
            plan.docs[r.id] = DocWrite(
                doc_id=r.id, feed=old.feed, status="deleted", title="", text=None, metadata={},
                updated_at=r.updated_at or old.updated_at, version_hash=None, text_hash=None, version=old.version + 1,
            )
            continue
        text = r.text or ""
        vh = version_hash(r.title, text, r.metadata)
        if old is not None and old.status != "deleted" and old.version_hash == vh:
            plan.counts.unchanged += 1
            if r.updated_at and (old.updated_at is None or r.updated_at > old.updated_at):
                plan.touched_updated_at[r.id] = r.updated_at
            continue
        norms[r.id] = normalize_text(text)
        th = sha256_hex(norms[r.id])  # == text_hash(text)
        if old is not None and old.status == "active":
            plan.old_active.add(r.id)
            if old.text_hash != th:
                leaving.add(r.id)
        candidates[r.id] = DocWrite(
            doc_id=r.id, feed=feed, status="active", title=r.title, text=text, metadata=r.metadata,
            updated_at=r.updated_at, version_hash=vh, text_hash=th,
            version=(old.version + 1) if old is not None else 1,
        )

    # Duplicates whose kept copy leaves get another chance: one of them may become the kept copy.
    for d in ctx.ledger.duplicates_of(leaving):
        if d.doc_id in candidates or d.doc_id in plan.docs:
            continue
        candidates[d.doc_id] = _rewrite(d, status="active")

    _dedupe(ctx, plan, candidates, leaving, norms)
    kept_after = {d for d in candidates if plan.docs[d].status == "active"}
    in_batch = {r.id for r in recs}
    plan.counts.promoted = len(kept_after - in_batch)
    plan.counts.upserted = len(kept_after & in_batch)
    plan.reindex = sorted(kept_after)
    return plan


def _rewrite(d: DocRow, **changes: Any) -> DocWrite:
    w = DocWrite(
        doc_id=d.doc_id, feed=d.feed, status=d.status, title=d.title, text=d.text, metadata=d.metadata,
        updated_at=d.updated_at, version_hash=d.version_hash, text_hash=d.text_hash, duplicate_of=d.duplicate_of,
        dup_kind=d.dup_kind, minhash=d.minhash, version=d.version,
    )
    for k, v in changes.items():
        setattr(w, k, v)
    return w


def _dedupe(ctx: IndexContext, plan: BatchPlan, candidates: dict[str, DocWrite], leaving: set[str], norms: dict[str, str]) -> None:
    """Exact duplicates keep the smallest id of their group (order-independent); near duplicates
    keep whichever copy was indexed first and are checked against the whole index via LSH."""
    cfg = ctx.settings.dedupe
    excluded = set(leaving) | set(candidates)  # their ledger rows no longer describe them
    ids = sorted(candidates)

    ledger_exact: dict[str, list[str]] = {}
    if cfg.exact:
        found = ctx.ledger.active_by_text_hash(candidates[d].text_hash for d in ids)
        ledger_exact = {h: sorted(x for x in v if x not in excluded) for h, v in found.items()}

    sigs: dict[str, Signature] = {}
    bucket_keys: dict[str, list[int]] = {}
    ledger_buckets: dict[str, set[str]] = {}
    ledger_sigs: dict[str, Signature] = {}
    if ctx.near is not None:
        texts = [norms[d] if d in norms else normalize_text(candidates[d].text or "") for d in ids]
        for d, sig in zip(ids, ctx.near.signatures(texts, normalized=True)):
            sigs[d] = sig
            bucket_keys[d] = ctx.near.buckets(sig)
        ledger_buckets = ctx.ledger.lsh_candidates(k for d in ids for k in bucket_keys[d])
        cand_ids = {x for s in ledger_buckets.values() for x in s} - excluded
        for did, row in ctx.ledger.get_documents(cand_ids).items():
            if row.status == "active" and row.minhash:
                ledger_sigs[did] = Signature.from_bytes(row.minhash)

    batch_exact: dict[str, str] = {}
    batch_near = BatchBuckets()
    demoted: dict[str, str] = {}  # ledger doc -> new kept copy

    for d in ids:
        w = candidates[d]
        if cfg.exact:
            th = w.text_hash or ""
            holders = [x for x in ledger_exact.get(th, []) if x not in demoted]
            if th in batch_exact:
                holders.append(batch_exact[th])
            if holders:
                keeper = min(holders)
                if keeper < d:
                    _mark_dup(plan, w, keeper, "exact", 1.0)
                    plan.counts.exact_duplicates += 1
                    continue
                # d is the smallest id of its group. Ids are processed in order, so every holder is a
                # larger-id kept copy in the ledger: it becomes d's duplicate.
                for h in holders:
                    demoted[h] = d
            batch_exact[th] = d
        if ctx.near is not None:
            sig = sigs[d]
            pool = {x for k in bucket_keys[d] for x in ledger_buckets.get(k, ())} & set(ledger_sigs)
            pool -= set(demoted)
            scored = [(sig.jaccard(ledger_sigs[x]), x) for x in pool]
            scored += [(sig.jaccard(batch_near.signatures[x]), x) for x in batch_near.candidates(bucket_keys[d])]
            matches = [m for m in scored if m[0] >= cfg.near_threshold]
            if matches:
                sim, of = min(matches, key=lambda m: (-m[0], m[1]))  # most similar, then smallest id
                _mark_dup(plan, w, of, "near", sim)
                plan.counts.near_duplicates += 1
                continue
            w.minhash = sig.to_bytes()
            w.buckets = bucket_keys[d]
            batch_near.add(d, sig, bucket_keys[d])
        w.status = "active"
        w.duplicate_of = None
        w.dup_kind = None
        plan.docs[d] = w

    if demoted:
        rows = ctx.ledger.get_documents(demoted)
        for old_id, new_id in demoted.items():
            plan.docs[old_id] = _rewrite(rows[old_id], status="duplicate", duplicate_of=new_id, dup_kind="exact", minhash=None)
            plan.old_active.add(old_id)
            plan.counts.exact_duplicates += 1
    _repoint_duplicates(ctx, plan)


def _repoint_duplicates(ctx: IndexContext, plan: BatchPlan) -> None:
    """Every duplicate names a kept copy, never another duplicate: when a kept copy stops being one
    (demoted, or re-sent and now a duplicate itself), its duplicates follow it to its own kept copy."""

    def kept_copy(d: str) -> str:
        seen: set[str] = set()
        while (w := plan.docs.get(d)) is not None and w.status == "duplicate" and w.duplicate_of and d not in seen:
            seen.add(d)
            d = w.duplicate_of
        return d

    for w in plan.docs.values():
        if w.status == "duplicate" and w.duplicate_of:
            w.duplicate_of = kept_copy(w.duplicate_of)
    stopped = [d for d in plan.old_active if d in plan.docs and plan.docs[d].status == "duplicate"]
    for dup in ctx.ledger.duplicates_of(stopped):
        if dup.doc_id not in plan.docs:
            plan.docs[dup.doc_id] = _rewrite(dup, duplicate_of=kept_copy(dup.duplicate_of or ""))


def _mark_dup(plan: BatchPlan, w: DocWrite, of: str, kind: str, sim: float) -> None:
    w.status = "duplicate"
    w.duplicate_of = of
    w.dup_kind = kind
    w.similarity = sim
    w.minhash = None
    w.buckets = []
    plan.docs[w.doc_id] = w

