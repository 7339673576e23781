"""What the crash-safety test runs in child processes: the core ingest driver, no Prefect.

`python -c "...; serve()"` starts a zygote that pays the imports once (Great Expectations alone
takes ~3 s) and then, per request read from stdin, forks a child that runs one ingest. Each
child is a real process with its own pid, killed by the test with SIGKILL; the zygote reaps it
and reports its exit status. That keeps 20+ trials inside the test-time budget.

Protocol, one JSON object per line: the test writes `{"ws", "feed", "cfg"}`; the zygote answers
`{"pid"}` when the child starts and `{"pid", "exit", "wall_s"}` when it is gone.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

from tqdm import tqdm

from indexops.index.context import open_index
from indexops.ingest.driver import ingest_path
from indexops.ingest.validate import load_suite
from indexops.settings import load_settings


def run_ingest(workspace: str, feed: str, config: str) -> None:
    """Open the workspace and apply every pending batch file of the delta feed."""
    ctx = open_index(workspace, load_settings(config))
    try:
        ingest_path(ctx, feed, "delta")
    finally:
        ctx.close()


def serve() -> None:
    load_suite(load_settings().validation.suite)  # warm: GE's import and context, no threads yet
    # GE builds a tqdm bar per validation and tqdm's default lock is a named semaphore, which a
    # SIGKILLed child can never release ("leaked semaphore" warnings): a thread lock suffices
    tqdm.set_lock(threading.RLock())
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.dup2(2, 1)  # the child's prints must not mix with the protocol
            code = 0
            try:
                run_ingest(req["ws"], req["feed"], req["cfg"])
            except BaseException:  # noqa: BLE001 - reported to the test as a non-zero exit
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - t0}) + "\n")
        out.flush()
