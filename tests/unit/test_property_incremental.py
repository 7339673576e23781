"""Property: applying random delta batches one at a time ends in the same index as loading the
final state as one batch (same snapshot id, same points and chunk hashes, same duplicate records).

Near-duplicate detection is off: its keep-first rule is order-dependent by design. Exact
duplicates (smallest id kept) are order-independent and are exercised through a small text pool.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from indexops.ids import canonical_json, text_hash
from indexops.index.context import open_index
from indexops.index.snapshot import current_snapshot_id, recompute_snapshot_id
from indexops.ingest.stages import apply_batch
from indexops.models import FeedRecord
from tests.unit._helpers import assert_store_matches_ledger, ledger_points, settings_for

SETTINGS = settings_for({
    "dedupe": {"near": False},
    "chunking": {"strategy": "token_window", "max_tokens": 10, "overlap_tokens": 2, "include_title": True},
})
IDS = ["a", "b", "c", "d", "e"]
ALPHA = "Alpha beta gamma delta epsilon."
RIVERS = "rivers carry sediment from mountains to the sea where it settles into deltas over many centuries"
# (title, text, metadata): few combinations, so re-sent identical records and duplicates are common
CONTENTS = [
    ("", ALPHA, {}),
    ("", "alpha   BETA gamma delta epsilon.", {}),  # same normalised text as ALPHA: an exact duplicate
    ("Title", ALPHA, {"k": 1}),  # same text again, other title and metadata
    ("", RIVERS, {}),
    ("", RIVERS, {"k": 1}),  # metadata-only change of the previous one
    ("Title", RIVERS, {}),  # title change (the title is embedded)
    ("", ("one two three four five six seven eight " * 3).strip(), {}),  # a repeated window inside one doc
    ("", "short note", {}),
]
STAMPS = [None, *(datetime(2024, 1, d, tzinfo=timezone.utc) for d in (1, 2, 3))]

upserts = st.builds(
    lambda i, c, s: FeedRecord(id=i, title=CONTENTS[c][0], text=CONTENTS[c][1], metadata=CONTENTS[c][2], updated_at=STAMPS[s]),
    st.sampled_from(IDS), st.sampled_from([0, 0, 1, 1, 2, 3, 4, 5, 6, 7]), st.integers(0, len(STAMPS) - 1),
)
deletes = st.builds(lambda i, s: FeedRecord(id=i, op="delete", updated_at=STAMPS[s]), st.sampled_from(IDS), st.integers(0, len(STAMPS) - 1))
batches_st = st.lists(st.lists(st.one_of(upserts, upserts, deletes), min_size=1, max_size=6), min_size=1, max_size=6)


def final_state(batches: list[list[FeedRecord]]) -> dict[str, FeedRecord]:
    """The product rules, written independently of the pipeline: last record of an id wins in a
    batch; an older update (upsert or delete) than the stored one is stale; an identical upsert
    only moves updated_at forward; deleting an unknown or deleted doc does nothing."""
    state: dict[str, dict] = {}
    for batch in batches:
        last: dict[str, FeedRecord] = {}
        for r in batch:
            last[r.id] = r
        for r in last.values():
            old = state.get(r.id)
            if old and old["updated_at"] and r.updated_at and r.updated_at < old["updated_at"]:
                continue
            if r.op == "delete":
                if old is None or old["record"] is None:
                    continue
                state[r.id] = {"record": None, "updated_at": r.updated_at or old["updated_at"]}
                continue
            content = (r.title, r.text, canonical_json(r.metadata))
            if old and old["record"] is not None and old["content"] == content:
                if r.updated_at and (old["updated_at"] is None or r.updated_at > old["updated_at"]):
                    old["updated_at"] = r.updated_at
                continue
            state[r.id] = {"record": r, "content": content, "updated_at": r.updated_at}
    return {
        d: FeedRecord(id=d, title=s["record"].title, text=s["record"].text, metadata=s["record"].metadata, updated_at=s["updated_at"])
        for d, s in sorted(state.items())
        if s["record"] is not None
    }


def _dup_view(ctx, ids):
    return {d: (r.status, r.duplicate_of) for d, r in ctx.ledger.get_documents(ids).items()}


def _points(ctx):
    return {(p, v["chunk_hash"]) for p, v in ctx.store.iter_points(["chunk_hash"])}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: the profile (25; `make test-deep` 400)
@given(batches=batches_st)
# a re-sent kept copy that becomes a duplicate takes its own duplicates along: `c` must name `a`, not `b`
@example(batches=[
    [FeedRecord(id="b", text=ALPHA), FeedRecord(id="c", text=ALPHA)],
    [FeedRecord(id="a", text=ALPHA), FeedRecord(id="b", text=CONTENTS[1][1])],
])
def test_incremental_batches_equal_one_full_load(batches):
    final = final_state(batches)
    with tempfile.TemporaryDirectory(prefix="indexops-prop-") as tmp:
        a = open_index(Path(tmp) / "incremental", SETTINGS)
        b = open_index(Path(tmp) / "full", SETTINGS)
        try:
            for i, batch in enumerate(batches):
                apply_batch(a, batch, "feed", f"run-{i}")
            apply_batch(b, list(final.values()), "feed", "full")

            # documents: live set and exact-duplicate records, against an independent oracle
            live_a = {d for d, r in a.ledger.get_documents(IDS).items() if r.status != "deleted"}
            assert live_a == set(final)
            groups: dict[str, list[str]] = defaultdict(list)
            for d, r in final.items():
                groups[text_hash(r.text or "")].append(d)
            expected = {d: ("active", None) if d == min(g) else ("duplicate", min(g)) for g in groups.values() for d in g}
            assert _dup_view(a, final) == expected
            assert _dup_view(b, final) == expected

            # index content: same points, same chunk hashes, same snapshot id
            assert _points(a) == _points(b)
            assert ledger_points(a) == ledger_points(b)
            sid = current_snapshot_id(a.ledger, a.collection)
            assert sid == current_snapshot_id(b.ledger, b.collection)
            assert sid == recompute_snapshot_id(a.ledger, a.collection)
            assert_store_matches_ledger(a)
            assert_store_matches_ledger(b)
        finally:
            a.close()
            b.close()


def test_final_state_oracle_hand_example():
    t1, t2, t3 = STAMPS[1], STAMPS[2], STAMPS[3]
    batches = [
        [FeedRecord(id="a", text="x", updated_at=t2), FeedRecord(id="b", text="y")],
        [FeedRecord(id="a", text="older", updated_at=t1), FeedRecord(id="b", op="delete"), FeedRecord(id="c", op="delete")],
        [FeedRecord(id="c", text="first"), FeedRecord(id="c", text="last"), FeedRecord(id="a", text="x", updated_at=t3)],
    ]
    final = final_state(batches)
    assert {d: (r.text, r.updated_at) for d, r in final.items()} == {"a": ("x", t3), "c": ("last", None)}
