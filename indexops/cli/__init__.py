"""The `indexops` command line. Commands that run pipelines start the Prefect flow (imported
lazily, so `indexops --help` and ledger queries stay fast and Prefect-free)."""

from __future__ import annotations

# The command groups register on `app` as they are imported (this order is the order of `--help`).
from indexops.cli import ingest, index, ops
from indexops.cli.common import app

__all__ = ["app", "index", "ingest", "main", "ops"]


def main() -> None:
    app()
