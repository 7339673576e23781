"""What tests/integration/test_sql_source.py kills: one ingest of a `sql` source in its own process.

`python -m tests.integration._sql_crash_child WORKSPACE URL CONFIG` opens the workspace and runs the
core driver over the table (the password comes from the environment variable `sql.password_env` names).
"""

from __future__ import annotations

import sys

from indexops.index.context import open_index
from indexops.ingest.driver import ingest_path
from indexops.settings import load_settings


def main(workspace: str, url: str, config: str) -> None:
    ctx = open_index(workspace, load_settings(config))
    try:
        ingest_path(ctx, url, "sql", feed="docs")
    finally:
        ctx.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
