"""Compile the repository's packages before timing a process that imports them.

A normal install keeps bytecode next to the sources; where PYTHONDONTWRITEBYTECODE is set (as on
the machine these figures come from) every fresh process would recompile indexops, flows and tasks
first: about 0.5 s per `indexops ingest`, which is not a cost a user pays.
"""

from __future__ import annotations

import compileall
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compile_repo() -> None:
    for pkg in ("indexops", "flows", "tasks"):
        compileall.compile_dir(str(REPO / pkg), quiet=1)
