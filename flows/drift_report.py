"""Daily drift report: retrieval quality over time, corpus change, embedding drift and coverage.
An alert is a finding, not a failure: the run completes and the verdicts are in its artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow

from indexops.settings import load_settings
from tasks.report import build_drift_report, publish_drift_artifacts


@flow(name="drift_report", description="Write drift-report.html/json for a workspace and publish the headline verdicts.")
def drift_report(
    workspace: str,
    out_dir: str,
    config_path: str | None = None,
    since: str | None = None,
    redact: bool | None = None,
    query_log: str | None = None,
) -> dict[str, Any]:
    """Build the report into `out_dir`; publish a markdown and a link artifact."""
    settings = load_settings(config_path)
    summary = build_drift_report(workspace, out_dir, settings, since, redact, query_log)
    publish_drift_artifacts(summary)
    return {k: v for k, v in summary.items() if k != "markdown"}


if __name__ == "__main__":
    import sys

    drift_report(workspace=sys.argv[1], out_dir=sys.argv[2])
