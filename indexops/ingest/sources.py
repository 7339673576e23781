"""Where batches come from: delta feeds, full snapshots and BEIR corpora."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from indexops.ingest.readers import FeedFileError, is_batch_file, read_batch_file
from indexops.ingest.stages import file_sha256
from indexops.ingest.storage import is_remote, is_sql_url, local_path, url_basename
from indexops.ledger import AppliedFile, Ledger
from indexops.models import Quarantined, SourceRecord

SourceKind = Literal["delta", "snapshot", "beir", "documents", "sql"]


@dataclass
class PendingFile:
    name: str
    path: Path
    sha256: str
    late: bool = False  # sorts before the cursor but was never applied


@dataclass
class FeedStatus:
    """What a delta feed holds relative to the ledger."""

    feed: str
    pending: list[PendingFile] = field(default_factory=list)
    changed_after_apply: list[str] = field(default_factory=list)
    already_applied: int = 0


def detect_kind(path: str | Path) -> SourceKind:
    """`sql` for a database URL, `beir` for a folder with corpus.jsonl, else `delta` (a document
    tree is never guessed: it is `--source documents`)."""
    if is_sql_url(path):
        return "sql"
    if is_remote(path):
        return "delta"
    if (local_path(path) / "corpus.jsonl").is_file():
        return "beir"
    return "delta"


def feed_name(path: str | Path) -> str:
    """A feed's default name: its folder's name (a URL's last path segment)."""
    if is_remote(path) or is_sql_url(path):
        return url_basename(str(path))
    return local_path(path).resolve().name


def batch_files(root: Path) -> list[Path]:
    """A feed directory's batch files in name order, the order they apply in."""
    return sorted((x for x in root.iterdir() if is_batch_file(x)), key=lambda x: x.name)


def scan_delta_feed(path: str | Path, ledger: Ledger, feed: str) -> FeedStatus:
    """List the batch files still to apply, in name order, and those changed after apply.

    Raises:
        FileNotFoundError: the feed directory does not exist.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"feed directory not found: {root}")
    applied = ledger.applied_file_records(feed)
    cur = ledger.cursor(feed)
    st = FeedStatus(feed=feed)
    restat: list[AppliedFile] = []
    for p in batch_files(root):
        try:
            stat = p.stat()  # before the hash: a stat kept with a hash is never newer than the bytes hashed
            done = applied.get(p.name)
            if done is not None and (done.size, done.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                st.already_applied += 1  # the bytes its hash was taken from: no need to read them again
                continue
            h = file_sha256(p)
        except FileNotFoundError:
            continue  # removed while we listed it: it is simply not pending
        if done is not None:
            if done.sha256 != h:
                st.changed_after_apply.append(p.name)
            else:
                st.already_applied += 1
                restat.append(done._replace(size=stat.st_size, mtime_ns=stat.st_mtime_ns))
            continue
        st.pending.append(PendingFile(p.name, p, h, late=bool(cur and p.name < cur["last_file"])))
    if restat:  # applied before stats were kept, or touched since: hashed once, trusted from now on
        ledger.remember_file_stats(feed, restat)
    return st


def read_pending(pf: PendingFile, feed: str) -> tuple[list[SourceRecord], list[Quarantined], AppliedFile]:
    """Read a pending file and confirm its bytes are the ones scanned (no change mid-run).

    The file is stat'ed before it is hashed again, so the size and mtime kept with the hash are never
    newer than the bytes hashed: a file changed later shows a different stat and is hashed again."""
    recs, bad = read_batch_file(pf.path, feed)
    try:
        stat = pf.path.stat()
        now = file_sha256(pf.path)
    except FileNotFoundError:
        now = None
    if now != pf.sha256:
        raise FeedFileError(f"batch file {pf.name!r} changed or vanished while it was being read; it will be applied on the next run")
    return recs, bad, AppliedFile(pf.name, pf.sha256, len(recs) + len(bad), stat.st_size, stat.st_mtime_ns)


def iter_snapshot_records(path: str | Path, feed: str, kind: SourceKind) -> Iterator[tuple[SourceRecord | None, Quarantined | None]]:
    """Every record of a full-snapshot directory or a BEIR corpus, with read errors inline."""
    root = Path(path)
    if kind == "beir":
        files = [root / "corpus.jsonl"]
    else:
        if not root.is_dir():
            raise FileNotFoundError(f"snapshot directory not found: {root}")
        files = batch_files(root)
    for f in files:
        try:
            recs, bad = read_batch_file(f, feed)
        except FeedFileError as e:
            yield None, Quarantined(feed=feed, file=f.name, line=0, reason=str(e))
            continue
        for q in bad:
            yield None, q
        for r in recs:
            if kind == "beir":
                raw = dict(r.raw)
                did = raw.pop("_id", raw.pop("id", None))
                meta = raw.pop("metadata", None) or {}
                r = SourceRecord(file=r.file, line=r.line, raw={"id": did, "title": raw.pop("title", ""), "text": raw.pop("text", None), "metadata": meta})
            elif r.raw.get("op", "upsert") == "delete":
                yield None, Quarantined(feed=feed, file=r.file, line=r.line, record_id=str(r.raw.get("id")), reason="a full snapshot holds documents, not deletes")
                continue
            yield r, None
