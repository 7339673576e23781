"""The drift_report flow under Prefect's test harness: both files written, the markdown and the
link artifacts published (read back through the Prefect client), and an alert does not fail the run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from flows.drift_report import drift_report
from tests.drift_helpers import EMAIL, build_workspace


def _artifacts(keys: list[str]):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def _read():
        async with get_client() as c:
            return await c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))

    return asyncio.run(_read())


def test_flow_writes_report_and_publishes_artifacts(tmp_path):
    p = build_workspace(tmp_path)
    out = tmp_path / "reports"
    r = drift_report(workspace=str(p["workspace"]), out_dir=str(out), config_path=str(p["config"]), query_log=str(p["query_log"]))
    assert r["verdict"] == "alert" and set(r["sections"]) == {"retrieval", "corpus", "embedding", "coverage"}
    html, js = Path(r["html"]), Path(r["json"])
    assert html == (out / "drift-report.html").resolve() and html.stat().st_size > 10_000
    assert json.loads(js.read_text())["verdict"] == "alert"
    arts = _artifacts(["drift-report", "drift-report-html"])
    md = [a for a in arts if a.key == "drift-report"]
    link = [a for a in arts if a.key == "drift-report-html"]
    assert md and link
    assert "Drift report: **ALERT**" in md[-1].data and "Coverage of production queries" in md[-1].data
    assert EMAIL not in md[-1].data and "[email]" in md[-1].data  # redacted by default
    assert html.as_uri() in str(link[-1].data)
