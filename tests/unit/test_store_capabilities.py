"""The vector store's optional capabilities are Protocols: each store declares what it can do, and
the upkeep takes the fallback path on a store that cannot."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from indexops.index.context import compact_store, optimize_index
from indexops.store.edge import EdgeStore
from indexops.store.protocol import IndexesInSteps, StoredInFiles, SupportsOptimize, SupportsServerAlias
from indexops.store.qdrant_client import QdrantClientStore


@pytest.fixture
def edge(tmp_path):
    s = EdgeStore(tmp_path / "shard", "c", 4)
    yield s
    s.close()


@pytest.fixture
def server():
    s = QdrantClientStore(":memory:", "c", 4)
    yield s
    s.close()


def test_each_store_declares_its_capabilities(edge, server):
    assert isinstance(edge, SupportsOptimize) and isinstance(edge, IndexesInSteps) and isinstance(edge, StoredInFiles)
    assert not isinstance(edge, SupportsServerAlias)
    assert isinstance(server, SupportsServerAlias)
    assert not isinstance(server, SupportsOptimize) and not isinstance(server, IndexesInSteps) and not isinstance(server, StoredInFiles)


def test_optimize_runs_where_the_store_can_and_is_skipped_where_it_cannot(edge, server):
    assert optimize_index(SimpleNamespace(store=server)) is False  # a server optimizes on its own
    calls = []

    class Optimizing:
        def optimize(self) -> bool:
            calls.append("optimize")
            return True

    assert optimize_index(SimpleNamespace(store=Optimizing())) is True and calls == ["optimize"]
    assert optimize_index(SimpleNamespace(store=edge)) in (True, False)


class _Ctx:
    """Just what `compact_store` reads of an `IndexContext`."""

    def __init__(self, store) -> None:
        self.settings = SimpleNamespace(ingest=SimpleNamespace(compact_store_every_points=10), store=SimpleNamespace(backend="edge"))
        self.points_since_open = 10
        self.store = store
        self.calls: list[str] = []

    def close_store(self) -> None:
        self.calls.append("reopen")
        self.points_since_open = 0


class _StepwiseStore:
    def __init__(self, in_steps: bool) -> None:
        self.indexes_in_steps = in_steps
        self.optimized = 0

    def optimize(self) -> bool:
        self.optimized += 1
        return True


@pytest.mark.parametrize("store, expect", [
    (_StepwiseStore(True), ["optimize"]),
    (_StepwiseStore(False), ["reopen"]),  # an older shard whose optimize would merge everything
    (SimpleNamespace(optimize=lambda: True), ["reopen"]),  # optimizes, but cannot say it indexes in steps
], ids=["in-steps", "not-in-steps", "no-capability"])
def test_compaction_optimizes_only_a_store_that_indexes_in_steps(store, expect):
    ctx = _Ctx(store)
    assert compact_store(ctx) is True  # type: ignore[arg-type]
    got = ctx.calls + ["optimize"] * getattr(store, "optimized", 0)
    assert got == expect and ctx.points_since_open == 0
