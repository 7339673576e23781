"""A source as units of work: the `Source` contract and the two sources behind it."""

from __future__ import annotations

import json
from pathlib import Path

from indexops.ingest.units import DeltaFeed, FullSnapshot, Source, open_source, plan_source


def _feed(root: Path, files: dict[str, list[dict]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_each_kind_opens_a_source_that_keeps_the_contract(tmp_path):
    delta = open_source(tmp_path / "helpcenter", "delta")
    snap = open_source(tmp_path / "dump", "snapshot", feed="catalog")
    assert isinstance(delta, DeltaFeed) and isinstance(snap, FullSnapshot)
    assert (delta.feed, delta.kind, snap.feed, snap.kind) == ("helpcenter", "delta", "catalog", "snapshot")
    assert isinstance(delta, Source) and isinstance(snap, Source)

    class NoPlan:
        feed, kind = "x", "delta"

    assert not isinstance(NoPlan(), Source)


def test_a_delta_feed_plans_one_unit_per_pending_file_in_name_order(make_ctx, tmp_path):
    root = _feed(tmp_path / "feed", {"000002-b.jsonl": [{"id": "b", "text": "beta"}],
                                     "000001-a.jsonl": [{"id": "a", "text": "alpha"}, {"id": "c", "text": "gamma"}]})
    sp = plan_source(make_ctx(), root, "delta")
    units = list(sp.units)
    assert [u.label for u in units] == ["000001-a.jsonl", "000002-b.jsonl"]
    assert [[r.raw["id"] for r in u.records] for u in units] == [["a", "c"], ["b"]]
    assert sp.pending_files == 2 and all(u.applied_file is not None for u in units)


def test_a_full_snapshot_is_cut_into_batches_and_its_last_unit_knows_every_id(make_ctx, hashing_settings, tmp_path):
    rows = [{"id": f"d{i}", "text": f"text {i}"} for i in range(5)]
    root = _feed(tmp_path / "dump", {"part.jsonl": rows})
    s = hashing_settings.model_copy(deep=True)
    s.ingest.batch_docs = 2
    units = list(plan_source(make_ctx(s), root, "snapshot").units)
    assert [len(u.records) for u in units] == [2, 2, 1]
    assert [u.snapshot_seen for u in units[:-1]] == [None, None]
    assert units[-1].snapshot_seen == {f"d{i}" for i in range(5)}
