"""A tree of documents (Markdown, HTML, text, PDF) on a local disk or in object storage, as a keyed
source: each file is one document whose id is its path relative to the root. The listing's
fingerprint (size and mtime; an object store's ETag) decides what is read; a file that cannot be
parsed becomes a quarantine row with the reason, and the other files land."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from indexops.index.context import IndexContext
from indexops.ingest.chunking import SECTION_STARTS
from indexops.ingest.documents import DocumentUnreadable, parse_document
from indexops.ingest.keyed import Fetched, Listed, ListsKeys, Listing
from indexops.ingest.storage import RemoteDir, RemoteFile, is_remote, local_path, merge_storage_options
from indexops.models import Quarantined, SourceRecord


@dataclass
class DocumentTree(ListsKeys):
    """Every document file under `root` (a path or an fsspec URL), one document per file."""

    root: str
    feed: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold credentials
    kind: str = "documents"
    _remote: RemoteDir | None = field(default=None, init=False, repr=False)
    _listed: dict[str, RemoteFile] = field(default_factory=dict, init=False, repr=False)

    def list_keys(self, ctx: IndexContext) -> Listing:
        suffixes = tuple(s.lower() for s in ctx.settings.documents.suffixes)
        if is_remote(self.root):
            self._remote = RemoteDir(self.root, merge_storage_options(ctx.settings.source.storage_options, self.storage_options))
            self._listed = {f.rel: f for f in self._remote.files(recursive=True) if _wanted(f.rel, suffixes)}
            return Listing([Listed(k, f.fingerprint, f.size) for k, f in self._listed.items()])
        root = local_path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"document tree not found: {root}")
        out = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=_unlistable):  # a listing with a hole would delete what is in it
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                rel = p.relative_to(root).as_posix()
                if not _wanted(rel, suffixes):
                    continue
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                out.append(Listed(rel, f"size:{st.st_size}:mtime:{st.st_mtime_ns}", st.st_size))
        return Listing(sorted(out, key=lambda e: e.key))

    def fetch(self, ctx: IndexContext, keys: Sequence[Listed]) -> Iterator[Fetched]:
        limit = ctx.settings.documents.max_file_bytes
        for e in keys:
            if e.size is not None and e.size > limit:
                yield Fetched(e.key, e.fingerprint or "", error=self._bad(e.key, f"{e.size} bytes, more than documents.max_file_bytes={limit}"))
                continue
            try:
                data = self._remote.read(self._listed[e.key]) if self._remote is not None else (local_path(self.root) / e.key).read_bytes()
            except FileNotFoundError:
                continue  # removed since the listing: the next run's listing deletes it
            try:
                doc = parse_document(e.key, data)
            except DocumentUnreadable as err:
                yield Fetched(e.key, e.fingerprint or "", error=self._bad(e.key, str(err)))
                continue
            meta: dict[str, Any] = {"source_path": e.key}
            if len(doc.sections) > 1 or (doc.sections and doc.sections[0][1]):
                meta[SECTION_STARTS] = [[off, list(path)] for off, path in doc.sections]
            raw = {"id": e.key, "title": doc.title, "text": doc.text, "metadata": meta}
            yield Fetched(e.key, e.fingerprint or "", record=SourceRecord(file=e.key, line=1, raw=raw))

    def _bad(self, key: str, reason: str) -> Quarantined:
        return Quarantined(feed=self.feed, file=key, line=0, record_id=key, reason=f"unreadable document: {reason}")


def _unlistable(err: OSError) -> None:
    raise OSError(f"cannot list {err.filename}: {err.strerror}; nothing was changed (a partial listing would delete what it missed)") from err


def _wanted(rel: str, suffixes: tuple[str, ...]) -> bool:
    parts = PurePosixPath(rel).parts
    return not any(p.startswith((".", "~")) for p in parts) and PurePosixPath(rel).suffix.lower() in suffixes
