"""Operations: Prefect deployments and alerts from configs/operations.yaml, and the drift report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from indexops.cli.common import ConfigOpt, JsonOpt, WorkspaceOpt, _fail, _print_json, app


deployments_app = typer.Typer(no_args_is_help=True, help="Prefect deployments rendered from configs/operations.yaml.")
alerts_app = typer.Typer(no_args_is_help=True, help="Failure and staleness alerts as Prefect automations.")
app.add_typer(deployments_app, name="deployments")
app.add_typer(alerts_app, name="alerts")
OpsOpt = typer.Option(Path("configs/operations.yaml"), "--config", "-c", help="Operations config (schedules, feeds, alerts).")


def _operations(path: Path):
    from pydantic import ValidationError

    from indexops.operations import load_operations

    try:
        return load_operations(path)
    except FileNotFoundError as e:
        _fail(str(e), 2)
    except ValidationError as e:
        _fail(f"{path} is invalid:\n{e}", 2)


@deployments_app.command("render")
def deployments_render(
    config: Path = OpsOpt,
    out: Path = typer.Option(Path("deployments/prefect.yaml"), "--out", "-o"),
    check: bool = typer.Option(False, "--check", help="Exit 1 if OUT differs from what the config renders."),
) -> None:
    """Write the prefect.yaml that `prefect deploy --all` reads."""
    from indexops.operations import render_prefect_yaml

    text = render_prefect_yaml(_operations(config), source=str(config))
    if check:
        if not out.exists() or out.read_text() != text:
            _fail(f"{out} is out of date with {config}; run `indexops deployments render`")
        typer.echo(f"{out} matches {config}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    typer.echo(f"wrote {out}")


@deployments_app.command("prepare")
def deployments_prepare(config: Path = OpsOpt, settings_config: Optional[Path] = typer.Option(None, "--settings", help="indexops settings overlay (for the ingest concurrency limit name).")) -> None:
    """Create the work pool and the ingest concurrency limit on the Prefect server (idempotent)."""
    from indexops.settings import load_settings
    from tasks.deployments import prepare_deploy

    ops = _operations(config)
    for line in prepare_deploy(ops, load_settings(settings_config).ingest.concurrency_limit):
        typer.echo(line)


@alerts_app.command("setup")
def alerts_setup(
    config: Path = OpsOpt,
    webhook_url: Optional[str] = typer.Option(None, "--webhook-url", help="Quick start: send every alert to this webhook (a URL, env:VAR or secret:block)."),
) -> None:
    """Create or update notification blocks and automations; re-running never duplicates."""
    import os

    from indexops.operations import with_quickstart_webhook

    ops = _operations(config)
    if webhook_url:
        ref = webhook_url
        if not webhook_url.startswith(("env:", "secret:")):
            os.environ["INDEXOPS_QUICKSTART_WEBHOOK_URL"] = webhook_url  # keeps the URL out of every object but the block
            ref = "env:INDEXOPS_QUICKSTART_WEBHOOK_URL"
        ops = with_quickstart_webhook(ops, ref)
    from tasks.alerts import AlertsSetupError, setup_alerts

    try:
        rep = setup_alerts(ops)
    except (AlertsSetupError, ValueError) as e:
        _fail(str(e), 2)
        return
    for name, kind in rep.blocks.items():
        typer.echo(f"block       {name} ({kind})")
    for name in rep.removed_blocks:
        typer.echo(f"block       {name}: removed (no longer in the config)")
    for verb, names in (("created", rep.created), ("updated", rep.updated), ("removed", rep.removed)):
        for n in names:
            typer.echo(f"automation  {n}: {verb}")



@app.command("report")
def report_cmd(
    workspace: Path = WorkspaceOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Directory for drift-report.html/.json (the latest), a dated copy of each and index.html (the history)."),
    since: Optional[str] = typer.Option(None, "--since", help="ISO date: baseline = last snapshot before it; eval runs and queries from it on."),
    config: Optional[Path] = ConfigOpt,
    redact: Optional[bool] = typer.Option(None, "--redact/--no-redact", help="Replace e-mails, phones, IBAN/card numbers, IPs (default: drift.redact)."),
    query_log: Optional[Path] = typer.Option(None, "--query-log", help="JSONL of production queries (default: drift.query_log)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write the drift report (retrieval, corpus, embedding, coverage) and print the verdicts."""
    from indexops.drift.report import WorkspaceNotFound, build_drift_report, headline, parse_since, write_drift_report
    from indexops.settings import load_settings

    if not workspace.exists():
        _fail(f"workspace {workspace} does not exist; run `indexops ingest` first")
    if config is not None and not config.exists():
        _fail(f"config file {config} does not exist", 2)
    if query_log is not None and not query_log.is_file():
        _fail(f"query log {query_log} does not exist", 2)
    try:
        parse_since(since)
    except ValueError as e:
        _fail(str(e), 2)
    try:
        rep = build_drift_report(workspace, load_settings(config), since=since, redact=redact, query_log=query_log)
        paths = write_drift_report(rep, out)
    except WorkspaceNotFound as e:
        _fail(str(e))
        return
    except Exception as e:  # noqa: BLE001 - one clear paragraph, never a traceback
        _fail(f"drift report for {workspace} failed: {type(e).__name__}: {e}")
        return
    if as_json:
        _print_json({"html": str(paths["html"]), "json": str(paths["json"]), "index": str(paths["index"]), "verdict": rep["verdict"],
                     "summary": rep["summary"],
                     "sections": {s["id"]: s["verdict"] for s in rep["sections"]}})
        return
    typer.echo(f"drift report: {rep['verdict'].upper()} — {rep['summary']['overall']}")
    for title, verdict, reason in headline(rep):
        typer.echo(f"  {verdict:<5}  {title}: {reason[:160]}")
    typer.echo(f"html {paths['html']}")
    typer.echo(f"json {paths['json']}")
    typer.echo(f"history {paths['index']}")
