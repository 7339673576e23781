"""Published read replicas of a Qdrant Edge shard: how readers and the one writer share an index.

Edge takes a WAL lock per shard and has no read-only mode, so a reader that opens the writer's shard
blocks ingestion (and an ingest blocks it). After each committed snapshot the writer publishes an
immutable copy with the WAL switched off; readers open copies, never the writer's shard.

Layout, under `<workspace>/replicas/<collection>/`:
    00000042-<snapshot id>/   one published snapshot (a complete shard, `wal_enabled: false`)
        replica.json          snapshot id, and the writer-file stats each file was copied at
        .lease                readers hold a shared flock on it while they have the replica open
    HEAD.json                 the newest published replica (replaced atomically)

Publishing costs what changed, not the corpus: a file is copied from the writer when its stat moved
since the previous replica took it, else hard-linked from that replica (never from the writer,
which mutates its files in place). Only bulk data files are ever linked: a reader that loads a
shard rewrites its small metadata files (trackers, deletion flags, segment.json; measured on Edge
0.9), so every replica gets its own copies of those. Before a replica becomes visible the publisher
loads it once ("settles" it: Edge replays its journals on the first load) and checks that the load
left every linked file untouched; otherwise it is rebuilt from copies alone.

Crash safety: a replica is assembled in a `.staging-*` directory and renamed into place complete;
HEAD moves after the rename. A writer killed at any point leaves readers on the previous HEAD; the
next publish clears the leftovers.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPLICAS = "replicas"
HEAD = "HEAD.json"
MANIFEST = "replica.json"
LEASE = ".lease"
ATTEMPTS = 3  # copies of one snapshot tried before a publish fails
_DIR = re.compile(r"^(\d{8})-([0-9a-f]{64})$")
# Bulk data files that neither a reader's load nor a search writes (checked at every publish, and
# by tests/unit/test_replicas.py against the installed Edge): vectors, HNSW graph, sparse inverted
# index, payload and sparse-vector pages, the immutable id maps and payload-index maps.
_LINKABLE = re.compile(
    r"(^|/)(page_\d+\.dat|matrix\.dat|chunk_\d+\.mmap|links[\w.]*\.bin|graph\.bin|inverted_index\.dat"
    r"|point_to_values\.bin|values_to_points\.bin|id_tracker\.e2i|id_tracker\.i2e)$"
)


class NoPublishedSnapshot(LookupError):
    """The collection has no published replica yet (no ingest has finished since replicas exist)."""


class SnapshotNotRetained(LookupError):
    """A pinned snapshot id is known but its replica was removed by retention."""


@dataclass
class Replica:
    """One published snapshot on disk."""

    path: Path
    seq: int
    snapshot_id: str
    collection: str

    @property
    def shard(self) -> Path:
        return self.path / "shard"


@dataclass
class PublishReport:
    """What one publish cost: files and bytes copied or linked, seconds, replicas removed."""

    snapshot_id: str
    replica: str
    files_copied: int = 0
    files_linked: int = 0
    bytes_copied: int = 0
    bytes_linked: int = 0
    seconds: float = 0.0
    skipped: bool = False  # HEAD already held this content
    removed: list[str] = field(default_factory=list)
    relinked: bool = False  # a settle load wrote a linked file: rebuilt from copies
    attempts: int = 1  # copies made until one loaded with its shared files untouched
    load_errors: list[str] = field(default_factory=list)  # why earlier copies were dropped

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def replicas_root(workspace: str | Path, collection: str) -> Path:
    return Path(workspace) / REPLICAS / collection


def list_replicas(root: Path) -> list[Replica]:
    """Complete replicas of one collection, oldest first."""
    out = []
    if not root.is_dir():
        return out
    for p in root.iterdir():
        m = _DIR.match(p.name)
        if m and (p / MANIFEST).exists():
            out.append(Replica(p, int(m.group(1)), m.group(2), root.name))
    return sorted(out, key=lambda r: r.seq)


def head(root: Path) -> Replica | None:
    """The replica HEAD names (None before the first publish)."""
    try:
        h = json.loads((root / HEAD).read_text())
    except (OSError, ValueError):
        return None
    p = root / h["dir"]
    if not (p / MANIFEST).exists():
        return None
    return Replica(p, int(h["seq"]), h["snapshot_id"], root.name)


def head_stamp(root: Path) -> tuple[int, int] | None:
    """A cheap token that changes whenever HEAD moves (inode and mtime of HEAD.json)."""
    try:
        st = os.stat(root / HEAD)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def find(root: Path, snapshot: str) -> Replica | None:
    """The newest replica whose snapshot id starts with `snapshot`.

    Raises:
        ValueError: the prefix names more than one snapshot.
    """
    hits = [r for r in list_replicas(root) if r.snapshot_id.startswith(snapshot)]
    ids = {r.snapshot_id for r in hits}
    if len(ids) > 1:
        raise ValueError(f"snapshot prefix {snapshot!r} is ambiguous: {sorted(ids)}")
    return hits[-1] if hits else None


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _walk(shard: Path) -> Iterator[tuple[str, Path]]:
    """Files of a writer's shard that a replica needs (the WAL is not: replicas run without one)."""
    for dirpath, dirnames, filenames in os.walk(shard):
        rel_dir = os.path.relpath(dirpath, shard)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != "wal"]
            rel_dir = ""
        for f in filenames:
            yield (f"{rel_dir}/{f}" if rel_dir else f), Path(dirpath) / f


def publish(shard: str | Path, workspace: str | Path, collection: str, snapshot_id: str, *, retention: int,
            keep: frozenset[str] = frozenset(), share_files: bool = True, verify_links: bool = False,
            force: bool = False) -> PublishReport:
    """Publish the writer's flushed shard as the replica of `snapshot_id` and move HEAD to it.

    The caller holds the index's writer lock and has flushed the shard; nothing writes it meanwhile.

    Args:
        shard: the writer's shard directory.
        workspace: the workspace (replicas live under `<workspace>/replicas/<collection>`).
        collection: the collection the shard holds.
        snapshot_id: the ledger's id for the shard's content.
        retention: how many newest replicas to keep (besides `keep` and any a reader holds).
        keep: snapshot ids never removed (e.g. the one `live` is pinned to).
        share_files: hard-link unchanged bulk files from the previous replica (False: copy all).
        verify_links: compare every linked file with the writer's bytes (tests; reads the whole shard).
        force: publish even when HEAD already holds `snapshot_id` (the same content in rewritten files:
            after a repair or an optimize); otherwise such a publish is skipped.

    Returns:
        What the publish cost.
    """
    t0 = time.perf_counter()
    shard = Path(shard)
    root = replicas_root(workspace, collection)
    root.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(root)
    prev = head(root)
    if prev is not None and prev.snapshot_id == snapshot_id and not force:
        return PublishReport(snapshot_id, prev.path.name, skipped=True, seconds=time.perf_counter() - t0,
                             removed=collect_garbage(root, retention, keep | {snapshot_id}))
    existing = list_replicas(root)
    seq = max([r.seq for r in existing] + [prev.seq if prev else 0]) + 1
    report = PublishReport(snapshot_id, f"{seq:08d}-{snapshot_id}")
    staging = root / f".staging-{os.getpid()}-{time.time_ns()}"
    for attempt in range(1, ATTEMPTS + 1):
        linked = _assemble(shard, staging, collection, prev if share_files and attempt == 1 else None, report, verify_links)
        try:
            settled = _settle(staging, linked)
        except Exception as e:  # noqa: BLE001 - Edge could not load the copy: made again, from copies alone
            # seen once in ~300 publishes of a soak (a payload page read back short); readers never
            # see such a copy, and the next copy of the same quiescent files loaded
            if attempt == ATTEMPTS:
                raise RuntimeError(f"the published copy of {collection} did not load {ATTEMPTS} times; readers stay on "
                                   f"the previous snapshot. Last error: {e}") from e
            report = PublishReport(snapshot_id, report.replica, attempts=attempt + 1, load_errors=[*report.load_errors, str(e)[:300]])
            shutil.rmtree(staging)
            continue
        if settled:
            break
        # Edge wrote a file we took to be read-only: this replica gets copies of everything
        report = PublishReport(snapshot_id, report.replica, relinked=True, attempts=attempt + 1, load_errors=report.load_errors)
        shutil.rmtree(staging)
    else:
        raise RuntimeError(f"no copy of {collection} settled in {ATTEMPTS} attempts; readers stay on the previous snapshot")
    (staging / LEASE).touch()
    final = root / report.replica
    os.rename(staging, final)
    _write_head(root, final.name, seq, snapshot_id)
    report.removed = collect_garbage(root, retention, keep | {snapshot_id})
    report.seconds = time.perf_counter() - t0
    return report


def _assemble(shard: Path, staging: Path, collection: str, prev: Replica | None, report: PublishReport, verify: bool) -> dict[str, list[int]]:
    """Fill `staging/shard` from the writer's files; returns the linked files' stats (rel -> key)."""
    prev_src = json.loads((prev.path / MANIFEST).read_text()).get("source", {}) if prev is not None else {}
    out = staging / "shard"
    out.mkdir(parents=True)
    source: dict[str, list[int]] = {}
    linked: dict[str, list[int]] = {}
    for rel, src in _walk(shard):
        key = _stat_key(os.stat(src))
        source[rel] = key
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if prev is not None and prev_src.get(rel) == key and _LINKABLE.search(rel) and (prev.shard / rel).exists():
            os.link(prev.shard / rel, dst)
            if verify and not _same_bytes(src, dst):
                raise RuntimeError(f"replica file {rel} differs from the writer's although its stat did not move")
            st = os.stat(dst)
            linked[rel] = [st.st_ino, st.st_mtime_ns]
            report.files_linked += 1
            report.bytes_linked += key[1]
        else:
            report.bytes_copied += copy_sparse(src, dst)
            report.files_copied += 1
    cfg_path = out / "edge_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["wal_enabled"] = False  # no WAL, no WAL lock: any number of processes can load it
    cfg_path.write_text(json.dumps(cfg))
    (staging / MANIFEST).write_text(json.dumps({"snapshot_id": report.snapshot_id, "collection": collection,
                                                "created_at": time.time(), "source": source}, sort_keys=True))
    return linked


def copy_sparse(src: Path, dst: Path) -> int:
    """Copy a file keeping its holes (Edge preallocates its page files sparse: a plain copy would
    write every 32 MiB page in full); returns the data bytes copied."""
    size = os.stat(src).st_size
    n = 0
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        fdi, fdo = fi.fileno(), fo.fileno()
        off = 0
        while off < size:
            try:
                start = os.lseek(fdi, off, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(fdi, start, os.SEEK_HOLE)
            pos = start
            while pos < end:
                done = os.copy_file_range(fdi, fdo, end - pos, pos, pos)
                if done == 0:
                    break
                pos += done
            n += end - start
            off = end
        os.ftruncate(fdo, size)
    return n


def _settle(staging: Path, linked: dict[str, list[int]]) -> bool:
    """Load and close the replica once, so readers find its journals replayed; False when that
    load wrote any linked file (it is shared with older replicas and must stay as it was)."""
    import qdrant_edge as qe

    qe.EdgeShard.load(str(staging / "shard")).close()
    for rel, key in linked.items():
        st = os.stat(staging / "shard" / rel)
        if [st.st_ino, st.st_mtime_ns] != key:
            return False
    return True


def _same_bytes(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _write_head(root: Path, name: str, seq: int, snapshot_id: str) -> None:
    tmp = root / f".{HEAD}.{os.getpid()}-{time.time_ns()}"
    tmp.write_text(json.dumps({"dir": name, "seq": seq, "snapshot_id": snapshot_id}))
    os.replace(tmp, root / HEAD)  # readers see the old HEAD or the new one, never half of it


def _clear_leftovers(root: Path) -> None:
    """Staging and trash directories of earlier publishes (only the lock holder publishes)."""
    for p in root.iterdir():
        if p.name.startswith((".staging-", ".trash-")):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(f".{HEAD}."):
            p.unlink(missing_ok=True)


def collect_garbage(root: Path, retention: int, keep: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Remove replicas beyond the newest `retention`, except those in `keep`, HEAD's, and any a
    reader holds (its lease is locked). Returns the directory names removed."""
    reps = list_replicas(root)
    h = head(root)
    protected = {r.path.name for r in reps[-retention:]} | ({h.path.name} if h else set())
    removed = []
    for r in reps:
        if r.path.name in protected or r.snapshot_id in keep:
            continue
        fd = _open_lease(r.path)
        if fd is None:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a reader has it open: it stays readable until it lets go
            trash = root / f".trash-{r.path.name}-{time.time_ns()}"
            os.rename(r.path, trash)  # readers that open it from now on find it gone
        finally:
            os.close(fd)
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(r.path.name)
    return removed


def _open_lease(path: Path) -> int | None:
    try:
        return os.open(path / LEASE, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        return None


class Lease:
    """A reader's hold on one replica: while it is held, retention does not remove the replica."""

    def __init__(self, rep: Replica) -> None:
        self.replica = rep
        self._fd = _open_lease(rep.path)
        if self._fd is None:
            raise FileNotFoundError(rep.path)
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        # removal renames the directory while holding the exclusive lock: a replica still at its
        # place once we hold the shared one stays there until we let go
        if not (rep.path / MANIFEST).exists():
            self.release()
            raise FileNotFoundError(rep.path)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lease(root: Path, snapshot: str | None = None) -> Lease:
    """Hold HEAD's replica (or the newest one of `snapshot`), retrying if retention removes it first.

    Raises:
        NoPublishedSnapshot: nothing published yet (and no `snapshot` asked for).
        SnapshotNotRetained: `snapshot` has no replica any more.
    """
    for _ in range(20):
        rep = find(root, snapshot) if snapshot else head(root)
        if rep is None:
            if snapshot:
                kept = ", ".join(r.snapshot_id[:12] for r in reversed(list_replicas(root))) or "none"
                raise SnapshotNotRetained(f"snapshot {snapshot[:16]} is no longer retained for {root.name} "
                                          f"(serving.retention keeps the newest few; retained now: {kept})")
            raise NoPublishedSnapshot(f"collection {root.name} has no published snapshot yet; run an ingest "
                                      f"(or `indexops publish`) first")
        try:
            return Lease(rep)
        except FileNotFoundError:
            time.sleep(0.01)  # removed between our look and our lease: look again
    raise RuntimeError(f"could not hold a replica of {root.name}: replicas kept disappearing")


def disk_usage(workspace: str | Path, collection: str) -> dict[str, int]:
    """Bytes on disk: the writer's shard and all replicas (each hard-linked file counted once)."""
    def du(paths: list[Path], seen: set[int]) -> int:
        n = 0
        for base in paths:
            for dirpath, _d, files in os.walk(base):
                for f in files:
                    st = os.lstat(os.path.join(dirpath, f))
                    if st.st_ino not in seen:
                        seen.add(st.st_ino)
                        n += st.st_blocks * 512
        return n

    seen: set[int] = set()
    writer = du([Path(workspace) / "collections" / collection], seen)
    reps = du([r.path for r in list_replicas(replicas_root(workspace, collection))], seen)
    return {"writer_bytes": writer, "replica_bytes": reps}
