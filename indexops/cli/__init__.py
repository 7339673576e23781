"""The `indexops` command line. Commands that run pipelines start the Prefect flow (imported
lazily, so `indexops --help` and ledger queries stay fast and Prefect-free)."""

from __future__ import annotations

import sys

# The command groups register on `app` as they are imported (this order is the order of `--help`).
from indexops.cli import ingest, index, ops
from indexops.cli.common import app

__all__ = ["app", "index", "ingest", "main", "ops"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        _exit_now(130)
    except SystemExit as e:
        _exit_now(e.code)


def _exit_now(code: int | str | None) -> None:
    """Exit as the interpreter would, minus tearing down every module: after a flow run that
    teardown (Prefect, pydantic, SQLAlchemy) costs 0.3-0.4 s of a 3-s command. The interpreter's
    own first steps run here: `threading._shutdown()` (it stops idle `concurrent.futures` workers —
    OpenVINO leaves one — then joins the non-daemon threads; joining them alone waited forever on
    such a worker), then the exit handlers (Prefect drains its log and event queues there); the
    ledger and the store were closed by the command itself."""
    import atexit
    import os
    import threading

    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)
