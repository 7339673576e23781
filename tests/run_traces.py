"""What a CLI run leaves behind where a secret must not be: its output, the workspace's files, and on
the Prefect server its flow runs (parameters, states), their task runs, logs and artifacts."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import datetime
from pathlib import Path

from tests.conftest import REPO

INDEXOPS = str(REPO / ".venv" / "bin" / "indexops") if (REPO / ".venv" / "bin" / "indexops").exists() else "indexops"


def cli_ingest(feed: str, source: str, workspace: Path, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`indexops ingest` in a subprocess with exactly `env` (what a credentials test leaves out of it)."""
    return subprocess.run([INDEXOPS, "ingest", "--feed", feed, "--source", source, "--workspace", str(workspace),
                           "--config", str(config)], capture_output=True, text=True, env=env, timeout=300)


async def prefect_texts(workspace: str, started: datetime, runs: int = 1, api: str | None = None) -> dict[str, str]:
    """The `runs` flow runs of `workspace` started after `started` (on `api`, else the configured
    server), as JSON, with their logs (all pages, once every run has shipped some) and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId,
                                                FlowRunFilterStartTime)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    out: dict[str, str] = {}
    with temporary_settings({PREFECT_API_URL: api} if api else {}):
        async with get_client() as c:
            recent = await c.read_flow_runs(flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=started)), limit=200)
            found = [r for r in recent if r.parameters.get("workspace") == workspace]
            assert len(found) == runs, [r.name for r in found]
            ids = [r.id for r in found]
            for r in found:
                out[f"flow run {r.name}"] = r.model_dump_json()
            for t in await c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200):
                out[f"task run {t.name}"] = t.model_dump_json()  # a failed task's state message carries its exception
            for _ in range(40):  # run logs are shipped in batches: give the last ones a moment
                logs = await _all_logs(c, ids)
                if {entry.flow_run_id for entry in logs} == set(ids):
                    break
                await asyncio.sleep(0.25)
            out["logs"] = "\n".join(entry.model_dump_json() for entry in logs)
            for a in await c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))):
                out[f"artifact {a.key or a.id}"] = a.model_dump_json()
    return out


async def _all_logs(client, ids) -> list:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs: list = []
    while True:  # the API returns a page at a time
        page = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200, offset=len(logs))
        logs += page
        if len(page) < 200:
            return logs


def assert_secret_left_nowhere(secret: str, proc: subprocess.CompletedProcess, workspace: Path, started: datetime,
                               api: str) -> dict[str, str]:
    """`secret` is in neither the run's output, nor any byte of its workspace, nor its flow run, task
    runs, logs or artifacts; returns those Prefect texts for the caller's own checks."""
    assert secret not in proc.stdout + proc.stderr
    for f in workspace.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    texts = asyncio.run(prefect_texts(str(workspace), started, api=api))
    for k, v in texts.items():
        assert secret not in v, k
    return texts
