"""Golden snapshot ids: the bundled sample feed, applied file by file with the hashing embedder,
must name exactly these snapshots. Every other snapshot test derives its expectation with the
code under test; this one does not, so a change of the id formula, the recipe's serialisation,
the chunker or the dedupe rules fails here until the ids are re-pinned on purpose (and the
schema or chunker version bumped, since old snapshots would no longer reproduce).

The ids were computed by the code before the one-engine restructure (commit 62fc89c).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from indexops.index.context import open_index
from indexops.ingest.driver import ingest_path
from tests.unit._helpers import settings_for

SAMPLE_FEED = Path(__file__).resolve().parents[2] / "indexops" / "sample_data" / "feed"
GOLDEN = [
    "2456045d2d115b6e20a5c460ca9ef9c232fe8048d88c854a3c52233600cef119",  # 000001-initial.jsonl
    "96236d11127f0f753024a3d76ee8f3ed857f0cf2608a88addfb8cf3a645dd1d4",  # + 000002-updates.jsonl
    "94e5b9df8bdeed6bf8897c18ce016038642e7b37b6054b49973d80f5e55e0597",  # + 000003-cleanup.jsonl
]


def test_the_sample_feed_names_the_golden_snapshots(tmp_path):
    s = settings_for({"validation": {"max_bad_fraction": 0.5}})  # 000002 quarantines one row of six on purpose
    feed = tmp_path / "feed"
    feed.mkdir()
    got = []
    for f in sorted(SAMPLE_FEED.iterdir()):
        shutil.copy(f, feed / f.name)
        ctx = open_index(tmp_path / "ws", s)
        try:
            got.append(ingest_path(ctx, feed, "delta")["snapshot"]["snapshot_id"])
        finally:
            ctx.close()
    assert got == GOLDEN
