"""Embedding fanned out through prefect-dask's DaskTaskRunner on a local cluster of two worker
processes gives the same index as the sequential run, with the default backend (the real model):
same snapshot id, vectors within the backend's batch tolerance."""

from __future__ import annotations

import json

import numpy as np
import yaml

from flows.ingest import ingest
from indexops.ids import point_id
from indexops.index.context import open_index
from indexops.ledger import Ledger
from indexops.settings import load_settings
from tests.conftest import REPO, write_jsonl
from tests.unit.test_onnx_embedder import INT8_BATCH_MIN

MINI = REPO / "tests" / "data" / "mini_beir"


def _vectors(ws, config):
    ctx = open_index(ws, load_settings(config))
    try:
        ids = [c.chunk_id for batch in ctx.ledger.iter_chunks(ctx.collection) for c in batch]
        pts = ctx.store.retrieve([point_id(i) for i in ids], with_vectors=True)
        return {p["point_id"]: p["dense"] for p in pts}
    finally:
        ctx.close()


def test_dask_fanout_with_the_default_backend_gives_the_sequential_snapshot(tmp_path):
    """The default config (the real model, backend auto) on 12 documents: same snapshot id; vectors
    equal within the int8 batch tolerance (its activations share one scale per batch, and the
    fan-out batches differ from the sequential ones)."""
    docs = [json.loads(line) for line in (MINI / "corpus.jsonl").read_text().splitlines()[:12]]
    feed = write_jsonl(tmp_path / "feed" / "000001-a.jsonl", [{"id": d["_id"], "title": d.get("title", ""), "text": d["text"]} for d in docs]).parent
    seq_cfg, dask_cfg = tmp_path / "seq.yaml", tmp_path / "dask.yaml"
    seq_cfg.write_text(yaml.safe_dump({"embedding": {"workers": 1}}))
    dask_cfg.write_text(yaml.safe_dump({"embedding": {"workers": 1}, "runner": {"kind": "dask", "n_workers": 2, "threads_per_worker": 1, "embed_batch": 4}}))
    seq = ingest(feed_path=str(feed), workspace=str(tmp_path / "seq"), config_path=str(seq_cfg))
    dsk = ingest(feed_path=str(feed), workspace=str(tmp_path / "dask"), config_path=str(dask_cfg))
    assert dsk["snapshot"]["snapshot_id"] == seq["snapshot"]["snapshot_id"]
    assert dsk["counts"]["chunks_embedded"] == seq["counts"]["chunks_embedded"] >= 12
    vs, vd = _vectors(tmp_path / "seq", seq_cfg), _vectors(tmp_path / "dask", dask_cfg)
    assert vs.keys() == vd.keys() and len(vs) == seq["snapshot"]["chunks"]
    cos = [float(np.dot(vs[k], vd[k])) for k in vs]
    assert min(cos) > INT8_BATCH_MIN, min(cos)
    assert Ledger.for_workspace(tmp_path / "dask").list_runs()[0]["status"] == "completed"
    assert _encode_task_runs(dsk["run_id"], want=3) >= 3  # the texts really went out as tasks (ceil(n/4) of them)
    assert _encode_task_runs(seq["run_id"], want=0) == 0
    built = _encoders_built_per_worker(dsk["run_id"], tasks=3)
    assert built and set(built.values()) == {1}, built  # one model per worker process, not one per task


def _encoders_built_per_worker(flow_run_id: str, tasks: int) -> dict[int, int]:
    """{worker pid: encoders it had built by its last task}, read from the encode tasks' run logs."""
    import asyncio
    import re
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    line = re.compile(r"worker pid (\d+): \d+ text\(s\) encoded; encoders built in this worker: (\d+) \(tasks here: (\d+)\)")

    async def read() -> list[str]:
        async with get_client() as c:
            return [lg.message for lg in await c.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)]

    found: list[tuple[int, int, int]] = []
    deadline = time.time() + 30
    while time.time() < deadline:  # the workers ship their logs in batches
        found = [(int(m[1]), int(m[2]), int(m[3])) for msg in asyncio.run(read()) if (m := line.search(msg))]
        if len(found) >= tasks:
            break
        time.sleep(0.5)
    assert len(found) >= tasks, found
    return {pid: max(b for p, b, _ in found if p == pid) for pid, _, _ in found}


def _encode_task_runs(flow_run_id: str, want: int) -> int:
    import asyncio
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def count() -> int:
        async with get_client() as c:
            trs = await c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return sum(t.name.startswith("encode_texts") for t in trs)

    n, deadline = 0, time.time() + 20
    while time.time() < deadline:  # task runs reach the API through the events pipeline
        n = asyncio.run(count())
        if n >= want:
            break
        time.sleep(0.5)
    return n
