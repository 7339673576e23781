"""What every command group shares: the Typer app and its sub-apps, common options, errors and output."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Keep a RAG retrieval index fresh, versioned and measured.")
quarantine_app = typer.Typer(no_args_is_help=True, help="Records rejected by validation, with reason and position.")
snapshot_app = typer.Typer(no_args_is_help=True, help="Content-addressed snapshots of the index.")
duplicates_app = typer.Typer(no_args_is_help=True, help="Documents dropped as duplicates and what they duplicate.")
runs_app = typer.Typer(no_args_is_help=True, help="Ingest runs recorded in the ledger.")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(duplicates_app, name="duplicates")
app.add_typer(runs_app, name="runs")

WorkspaceOpt = typer.Option(..., "--workspace", "-w", help="Workspace directory (ledger, collections).")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML overlay on configs/default.yaml.")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _fail(msg: str, code: int = 1) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _ledger(workspace: Path, config: Optional[Path]):
    from indexops.ledger import Ledger
    from indexops.settings import load_settings

    if not workspace.exists():
        _fail(f"workspace {workspace} does not exist; run `indexops ingest` first")
    s = load_settings(config)
    return Ledger.for_workspace(workspace, s.ledger.url)


class _NoTraceback(logging.Formatter):
    """Wraps a console formatter so that log records print without their traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _quiet_console_tracebacks() -> None:
    """Prefect logs a failing run's traceback to the console; the CLI prints one paragraph
    instead. The traceback still reaches the Prefect API and UI (only console output changes)."""
    loggers = [logging.getLogger()] + [l for l in logging.root.manager.loggerDict.values() if isinstance(l, logging.Logger)]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stderr, sys.stdout) and not isinstance(h.formatter, _NoTraceback):
                h.setFormatter(_NoTraceback(h.formatter))


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
