"""Drift report stages as tasks: build the report files, publish the headline and the link."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from indexops.drift.html import headline_markdown
from indexops.drift.report import build_drift_report as build_report, write_drift_report
from indexops.settings import Settings


@task(name="build_drift_report", cache_policy=NO_CACHE, timeout_seconds=3600)
def build_drift_report(workspace: str, out_dir: str, settings: Settings, since: str | None = None,
                       redact: bool | None = None, query_log: str | None = None) -> dict[str, Any]:
    """Gather, test, write the report (latest and archived) and the history index; return paths and verdicts."""
    report = build_report(workspace, settings, since=since, redact=redact, query_log=query_log)
    paths = write_drift_report(report, out_dir)
    get_run_logger().info("drift report %s: %s", report["verdict"], ", ".join(f"{s['id']} {s['verdict']}" for s in report["sections"]))
    return {"html": str(paths["html"]), "json": str(paths["json"]), "index": str(paths["index"]), "archived": str(paths["archived"]),
            "verdict": report["verdict"], "summary": report["summary"]["overall"],
            "sections": {s["id"]: s["verdict"] for s in report["sections"]}, "markdown": headline_markdown(report, str(paths["html"]))}


@task(name="publish_drift_artifacts", cache_policy=NO_CACHE, timeout_seconds=120)
def publish_drift_artifacts(summary: dict[str, Any]) -> None:
    """Markdown artifact with the headline verdicts and a link artifact to the HTML file."""
    create_markdown_artifact(markdown=summary["markdown"], key="drift-report", description=f"drift report: {summary['verdict']}")
    create_link_artifact(link=Path(summary["html"]).resolve().as_uri(), link_text="drift-report.html", key="drift-report-html",
                         description="the full drift report (self-contained HTML, opens offline)")
