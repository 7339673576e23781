"""Reconcile the ledger with the vector store: every chunk row of a collection must be exactly one
point with the same chunk hash in the store, and the store must hold nothing else.

Both sides are streamed in point-id order and merge-joined: the ledger by keyset pages, the
store by its scroll (Qdrant scrolls in id order; a store that does not is detected and its ids
are first spilled to a temporary SQLite file, then read back sorted). Memory stays O(page):
one page of each side, at most `CAP` ids per kind of drift for the report, and nothing else —
the full list of drifted points goes to a temporary on-disk SQLite file that the repair reads
in pages.

Repair deletes points the ledger does not know and re-creates missing or altered points from the
document text in the ledger (re-chunked with the collection's chunker, embedded, upserted with
the pipeline's own functions), then checks everything again. A ledger whose running snapshot sum
disagrees with a recount is reset to the recount.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from indexops.index.context import IndexContext, snapshot_id_for
from indexops.index.snapshot import current_snapshot_id, publish_for_readers, recount_accumulator
from indexops.ingest.stages import ChunkPlan, embed_chunks, write_store
from indexops.models import Chunk

CAP = 100  # ids listed per kind of drift; the counts are always complete
PAGE = 1000
_REPAIR_DOCS = 200  # documents re-chunked and embedded per store write


@dataclass
class Drift:
    """What one pass over both sides found."""

    ledger_chunks: int = 0
    store_points: int = 0
    missing_in_store: list[str] = field(default_factory=list)  # point ids (first CAP)
    n_missing: int = 0
    extra_in_store: list[str] = field(default_factory=list)
    n_extra: int = 0
    hash_mismatch: list[str] = field(default_factory=list)
    n_mismatch: int = 0
    snapshot_id: str = ""  # from the ledger's running sum
    recomputed_snapshot_id: str = ""  # from a full scan of the chunk table
    state_chunks: int = 0  # the running chunk count

    @property
    def snapshot_ok(self) -> bool:
        return self.snapshot_id == self.recomputed_snapshot_id and self.state_chunks == self.ledger_chunks

    @property
    def clean(self) -> bool:
        return not (self.n_missing or self.n_extra or self.n_mismatch) and self.snapshot_ok

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "snapshot_ok": self.snapshot_ok, "clean": self.clean}


@dataclass
class ReconcileReport:
    """The drift found, what repair did, and what is left (`remaining` is set only by a repair)."""

    collection: str
    found: Drift
    repair: bool = False
    repaired: dict[str, int] = field(default_factory=dict)
    remaining: Drift | None = None
    unrepairable: list[dict[str, str]] = field(default_factory=list)  # first CAP: point_id, doc_id, reason
    n_unrepairable: int = 0

    @property
    def ok(self) -> bool:
        """The index agrees with the ledger now (after the repair, when one ran)."""
        return (self.remaining or self.found).clean

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection, "ok": self.ok, "repair": self.repair, "found": self.found.to_dict(),
            "repaired": self.repaired, "remaining": self.remaining.to_dict() if self.remaining else None,
            "unrepairable": self.unrepairable, "n_unrepairable": self.n_unrepairable,
        }

    def summary(self) -> str:
        """One line for logs and the CLI."""
        f = self.found
        s = (f"{self.collection}: ledger {f.ledger_chunks} chunks, store {f.store_points} points; missing {f.n_missing}, "
             f"extra {f.n_extra}, hash mismatch {f.n_mismatch}, snapshot sum {'ok' if f.snapshot_ok else 'DRIFTED'}")
        if self.repair:
            r = self.repaired
            s += (f"; repaired: deleted {r.get('deleted', 0)}, rewritten {r.get('rewritten', 0)}, "
                  f"snapshot sum reset {r.get('accumulator_reset', 0)}")
            s += "; clean afterwards" if self.ok else f"; NOT repaired: {self.n_unrepairable or 'see remaining'}"
        return s


class IndexDrift(RuntimeError):
    """Store and ledger still disagree after a repair: the maintenance flow fails (and alerts)."""


def raise_if_drifted(report: ReconcileReport) -> None:
    """Raise `IndexDrift` with one clear paragraph when the index is not consistent.

    Raises:
        IndexDrift: points are missing, extra or altered, or the snapshot sum is off.
    """
    if report.ok:
        return
    left = report.remaining or report.found
    reasons = "; ".join(f"{u['point_id']} (doc {u['doc_id']}): {u['reason']}" for u in report.unrepairable[:3])
    raise IndexDrift(
        f"collection {report.collection!r} does not match the ledger"
        + (" after repair" if report.repair else "")
        + f": {left.n_missing} point(s) missing, {left.n_extra} extra, {left.n_mismatch} with a wrong chunk hash, "
        f"snapshot sum {'ok' if left.snapshot_ok else 'drifted'}."
        + (f" Could not repair {report.n_unrepairable}, e.g. {reasons}." if reasons else "")
        + " `indexops reconcile --json` lists the point ids; searches may miss or return stale chunks until this is fixed"
        + (" (re-ingest the affected documents)." if report.repair else " (run it with --repair).")
    )


def reconcile_markdown(report: ReconcileReport) -> str:
    """The artifact of a maintenance run: counts before and after, and what could not be repaired."""
    rows = [("ledger chunks", "ledger_chunks"), ("store points", "store_points"), ("missing in store", "n_missing"),
            ("extra in store", "n_extra"), ("chunk hash mismatch", "n_mismatch")]
    after = report.remaining
    lines = [f"# Reconcile of `{report.collection}`: {'consistent' if report.ok else '**DRIFT REMAINS**'}", "",
             "| | found | after repair |", "|---|---:|---:|"]
    for label, k in rows:
        lines.append(f"| {label} | {getattr(report.found, k)} | {getattr(after, k) if after else '–'} |")
    lines.append(f"| snapshot sum | {'ok' if report.found.snapshot_ok else 'drifted'} | "
                 f"{('ok' if after.snapshot_ok else 'drifted') if after else '–'} |")
    if report.repaired:
        lines += ["", "Repaired: " + ", ".join(f"{k} {v}" for k, v in report.repaired.items())]
    for u in report.unrepairable[:20]:
        lines.append(f"- `{u['point_id']}` (doc `{u['doc_id']}`): {u['reason']}")
    return "\n".join(lines) + "\n"


class _Unsorted(Exception):
    """The store's scroll is not in point-id order: use the spilled, sorted copy instead."""


def reconcile(ctx: IndexContext, repair: bool = False, *, lock: bool = True, lock_wait_s: float = 0.0, page: int = PAGE) -> ReconcileReport:
    """Compare (and optionally repair) the store's points with the ledger's chunks of `ctx.collection`.

    Args:
        ctx: an open index; its chunker and embedder must be the collection's recipe (they are when
            it comes from `open_index` or `open_collection`).
        repair: delete points the ledger does not know, re-create missing or altered ones from the
            ledger's document text, reset a drifted snapshot sum, then check again.
        lock: take the index's ingest lock, so no batch is between its store write and its ledger
            commit while we look (that state is drift by design and repair would undo it).
        lock_wait_s: seconds to wait for a running ingest.
        page: rows per page on each side.

    Returns:
        The report; `ok` says whether store and ledger agree at the end.

    Raises:
        LedgerBusy: an ingest holds the index lock after `lock_wait_s`.
    """
    owner = ctx.ledger.acquire_lock(ctx.collection, wait_s=lock_wait_s) if lock else None
    try:
        with tempfile.TemporaryDirectory(prefix="indexops-reconcile-") as tmp:
            issues = _IssueFile(Path(tmp) / "issues.db")
            try:
                found = _scan(ctx, issues, page, Path(tmp))
                report = ReconcileReport(ctx.collection, found, repair=repair)
                if repair and not found.clean:
                    _repair(ctx, issues, report)
                    report.remaining = _scan(ctx, _IssueFile(None), page, Path(tmp))
                    if owner is not None:  # readers get the repaired content (same snapshot id)
                        publish_for_readers(ctx, force=True)
            finally:
                issues.close()
        return report
    finally:
        if owner is not None:
            ctx.ledger.release_lock(ctx.collection, owner)


# ------------------------------------------------------------------------------------------
# Detection: a merge-join of two id-ordered streams
# ------------------------------------------------------------------------------------------


class _IssueFile:
    """Drifted points on disk (kind, point id, chunk id, doc id, ledger chunk hash); None: count only."""

    def __init__(self, path: Path | None) -> None:
        self.db = sqlite3.connect(path) if path is not None else None
        if self.db is not None:
            self.db.execute("CREATE TABLE issues (kind TEXT, point_id TEXT, chunk_id TEXT, doc_id TEXT, chunk_hash TEXT)")
        self._buf: list[tuple[str, str, str | None, str | None, str | None]] = []

    def add(self, kind: str, point_id: str, chunk_id: str | None = None, doc_id: str | None = None, chunk_hash: str | None = None) -> None:
        if self.db is None:
            return
        self._buf.append((kind, point_id, chunk_id, doc_id, chunk_hash))
        if len(self._buf) >= PAGE:
            self.flush()

    def flush(self) -> None:
        if self.db is not None and self._buf:
            self.db.executemany("INSERT INTO issues VALUES (?, ?, ?, ?, ?)", self._buf)
            self._buf.clear()

    def pages(self, kinds: tuple[str, ...], order: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        assert self.db is not None
        self.flush()
        marks = ",".join("?" * len(kinds))
        cur = self.db.execute(f"SELECT point_id, chunk_id, doc_id, chunk_hash FROM issues WHERE kind IN ({marks}) ORDER BY {order}", kinds)
        while rows := cur.fetchmany(size):
            yield rows

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def _scan(ctx: IndexContext, issues: _IssueFile, page: int, tmp: Path) -> Drift:
    try:
        d = _merge(ctx, _store_in_order(ctx, page), issues, page)
    except _Unsorted:
        if issues.db is not None:
            issues.db.execute("DELETE FROM issues")
            issues._buf.clear()
        with _SpilledIds(tmp / "store-ids.db", ctx, page) as spilled:
            d = _merge(ctx, iter(spilled), issues, page)
    issues.flush()
    st = ctx.ledger.state(ctx.collection)
    assert st is not None
    d.snapshot_id = current_snapshot_id(ctx.ledger, ctx.collection)
    acc, n = recount_accumulator(ctx.ledger, ctx.collection)
    d.recomputed_snapshot_id = snapshot_id_for(acc, n, st["recipe"])
    d.state_chunks = st["chunks"]
    return d


def _store_in_order(ctx: IndexContext, page: int) -> Iterator[tuple[str, str | None]]:
    prev = ""
    for pid, payload in ctx.store.iter_points(["chunk_hash"], batch=page):
        if pid <= prev:
            raise _Unsorted(pid)
        prev = pid
        yield pid, payload.get("chunk_hash")


class _SpilledIds:
    """The store's (point id, chunk hash) pairs in a temporary SQLite table, read back in id order."""

    def __init__(self, path: Path, ctx: IndexContext, page: int) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("DROP TABLE IF EXISTS pts")  # a second pass (the check after a repair) reuses the file
        self.db.execute("CREATE TABLE pts (point_id TEXT PRIMARY KEY, chunk_hash TEXT) WITHOUT ROWID")
        buf: list[tuple[str, str | None]] = []
        for pid, payload in ctx.store.iter_points(["chunk_hash"], batch=page):
            buf.append((pid, payload.get("chunk_hash")))
            if len(buf) >= page:
                self.db.executemany("INSERT OR REPLACE INTO pts VALUES (?, ?)", buf)
                buf.clear()
        self.db.executemany("INSERT OR REPLACE INTO pts VALUES (?, ?)", buf)
        self.page = page

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        cur = self.db.execute("SELECT point_id, chunk_hash FROM pts ORDER BY point_id")  # BINARY = Python str order
        while rows := cur.fetchmany(self.page):
            yield from rows

    def __enter__(self) -> "_SpilledIds":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.db.close()


def _merge(ctx: IndexContext, store: Iterator[tuple[str, str | None]], issues: _IssueFile, page: int) -> Drift:
    d = Drift()

    def note(kind: str, pid: str, *rest: str | None) -> None:
        ids, attr = {"missing": (d.missing_in_store, "n_missing"), "extra": (d.extra_in_store, "n_extra"),
                     "mismatch": (d.hash_mismatch, "n_mismatch")}[kind]
        setattr(d, attr, getattr(d, attr) + 1)
        if len(ids) < CAP:
            ids.append(pid)
        issues.add(kind, pid, *rest)

    def ledger_rows() -> Iterator[Any]:
        prev = ""
        for rows in ctx.ledger.iter_chunks_by_point(ctx.collection, page):
            for r in rows:
                if r.point_id <= prev:
                    raise RuntimeError(f"ledger chunks of {ctx.collection!r} are not in point-id order at {r.point_id!r}")
                prev = r.point_id
                yield r

    led = ledger_rows()
    lrow = next(led, None)
    spt = next(store, None)
    while lrow is not None or spt is not None:
        if spt is None or (lrow is not None and lrow.point_id < spt[0]):
            assert lrow is not None
            d.ledger_chunks += 1
            note("missing", lrow.point_id, lrow.chunk_id, lrow.doc_id, lrow.chunk_hash)
            lrow = next(led, None)
        elif lrow is None or spt[0] < lrow.point_id:
            d.store_points += 1
            note("extra", spt[0])
            spt = next(store, None)
        else:
            d.ledger_chunks += 1
            d.store_points += 1
            if spt[1] != lrow.chunk_hash:
                note("mismatch", lrow.point_id, lrow.chunk_id, lrow.doc_id, lrow.chunk_hash)
            lrow = next(led, None)
            spt = next(store, None)
    return d


# ------------------------------------------------------------------------------------------
# Repair
# ------------------------------------------------------------------------------------------


def _repair(ctx: IndexContext, issues: _IssueFile, report: ReconcileReport) -> None:
    deleted = 0
    for rows in issues.pages(("extra",), "point_id", PAGE):
        ctx.store.delete([r[0] for r in rows])
        deleted += len(rows)
    if deleted:
        ctx.store.flush()

    rewritten = 0
    group: dict[str, list[tuple[str, str, str]]] = {}  # doc id -> (point id, chunk id, ledger chunk hash)
    for rows in issues.pages(("missing", "mismatch"), "doc_id, point_id", PAGE):
        for pid, cid, did, ch in rows:
            if did not in group and len(group) >= _REPAIR_DOCS:
                rewritten += _rewrite(ctx, group, report)
                group = {}
            group.setdefault(did, []).append((pid, cid, ch))
    if group:
        rewritten += _rewrite(ctx, group, report)

    reset = 0
    if not report.found.snapshot_ok:
        acc, n = recount_accumulator(ctx.ledger, ctx.collection)
        ctx.ledger.set_accumulator(ctx.collection, acc, n)
        reset = 1
    report.repaired = {"deleted": deleted, "rewritten": rewritten, "accumulator_reset": reset}


def _rewrite(ctx: IndexContext, group: dict[str, list[tuple[str, str, str]]], report: ReconcileReport) -> int:
    """Re-create the given chunks of these documents from the ledger's text; returns points written."""
    docs = ctx.ledger.get_documents(group)
    todo: list[Chunk] = []
    for did, wanted in group.items():
        doc = docs.get(did)
        if doc is None or doc.status != "active" or doc.text is None:
            state = "absent" if doc is None else doc.status
            for pid, _, _ in wanted:
                _unrepairable(report, pid, did, f"its document is {state} in the ledger, so its text cannot be re-chunked")
            continue
        made = {c.chunk_id: c for c in ctx.chunker.chunk(did, doc.title, doc.text, doc.metadata).chunks}
        for pid, cid, ch in wanted:
            c = made.get(cid)
            if c is None:
                _unrepairable(report, pid, did, "re-chunking the ledger's text no longer yields this chunk (text or chunker changed)")
            elif c.chunk_hash != ch:
                _unrepairable(report, pid, did, "the ledger's chunk hash differs from its document's current content")
            else:
                todo.append(c)
    if todo:
        write_store(ctx, ChunkPlan(to_embed=todo), embed_chunks(ctx, todo))
    return len(todo)


def _unrepairable(report: ReconcileReport, point_id: str, doc_id: str, reason: str) -> None:
    report.n_unrepairable += 1
    if len(report.unrepairable) < CAP:
        report.unrepairable.append({"point_id": point_id, "doc_id": doc_id, "reason": reason})
