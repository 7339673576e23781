"""A delta feed in object storage (`s3://bucket/prefix`, any fsspec URL): the same batch files,
applied in name order and once each, as a local feed directory. The listing's size and
modification time stand in for a local stat: an applied file listed as it was applied is not read
again, so a run with nothing new reads no object."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from indexops.index.context import IndexContext
from indexops.ingest.readers import FeedFileError, is_batch_name, parse_batch_bytes
from indexops.ingest.storage import RemoteDir, RemoteFile, merge_storage_options
from indexops.ingest.units import SourcePlan, WorkUnit
from indexops.ledger import AppliedFile
from indexops.models import Quarantined


@dataclass
class RemoteDeltaFeed:
    """Batch files under an fsspec URL, applied once each (what the ledger's applied files say)."""

    url: str
    feed: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold credentials
    kind: str = "delta"

    def plan(self, ctx: IndexContext) -> SourcePlan:
        name = self.feed
        where = RemoteDir(self.url, merge_storage_options(ctx.settings.source.storage_options, self.storage_options))
        applied = ctx.ledger.applied_file_records(name)
        cur = ctx.ledger.cursor(name)
        pending: list[RemoteFile] = []
        changed: list[str] = []
        restat: list[AppliedFile] = []
        for f in where.files(recursive=False):
            if not is_batch_name(f.rel):
                continue
            done = applied.get(f.rel)
            if done is None:
                pending.append(f)
            elif (done.size, done.mtime_ns) != (f.size, f.mtime_ns) and done.mtime_ns is not None:
                # listed differently from when it was applied: read it to tell a rewrite from a touch
                if hashlib.sha256(where.read(f)).hexdigest() != done.sha256:
                    changed.append(f.rel)
                else:
                    restat.append(done._replace(size=f.size, mtime_ns=f.mtime_ns))
        if restat:  # the same bytes, listed anew: trusted from now on
            ctx.ledger.remember_file_stats(name, restat)

        def units() -> Iterator[WorkUnit]:
            for f in pending:
                try:
                    data = where.read(f)  # read after listing: the size and mtime kept are never newer than the bytes
                except FileNotFoundError:
                    continue  # removed since the listing: not pending
                digest = hashlib.sha256(data).hexdigest()
                try:
                    recs, bad = parse_batch_bytes(data, f.rel, name)
                except FeedFileError as e:
                    yield WorkUnit(label=f.rel, read_errors=[Quarantined(feed=name, file=f.rel, line=0, reason=str(e))])
                    continue
                yield WorkUnit(label=f.rel, records=recs, read_errors=bad,
                               applied_file=AppliedFile(f.rel, digest, len(recs) + len(bad), f.size, f.mtime_ns))

        late = [f.rel for f in pending if cur and f.rel < cur["last_file"]]
        return SourcePlan(name, "delta", units(), changed, late, len(pending))
