"""The ledger after crashes and races: a dead lock holder is recognised (also before its parent
reaps it, and when its pid was recycled), and processes opening a new ledger together all succeed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import insert

from indexops.ledger import Ledger, LedgerBusy, locks, utcnow

HOLD = (
    "import sys, time\nfrom indexops.ledger import Ledger\n"
    "Ledger(sys.argv[1]).acquire_lock('col')\nprint('held', flush=True)\ntime.sleep(120)\n"
)


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_holder_is_stale_even_before_its_parent_reaps_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    led = Ledger(url)
    p = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(LedgerBusy, match=f"being ingested by {socket.gethostname()}:{p.pid}:"):
            led.acquire_lock("col")
        os.kill(p.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(p.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _state(p.pid) == "Z"  # dead, not reaped: kill(pid, 0) still succeeds on it
        owner = led.acquire_lock("col")
        assert owner.split(":")[1] == str(os.getpid())
        led.release_lock("col", owner)
    finally:
        p.kill()
        p.wait()
        led.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_recycled_pid_does_not_keep_a_dead_holders_lock(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        host, me = socket.gethostname(), os.getpid()
        long_ago = time.time_ns() - 3600 * 10**9  # before this (live) process started
        with led.engine.begin() as c:
            c.execute(insert(locks).values(name="col", owner=f"{host}:{me}:{long_ago}", acquired_at=utcnow()))
        owner = led.acquire_lock("col")  # the pid is alive, but it is not the process that locked
        assert owner != f"{host}:{me}:{long_ago}"
        led.release_lock("col", owner)
        with led.engine.begin() as c:  # the same pid with a current time is a live holder
            c.execute(insert(locks).values(name="col", owner=f"{host}:{me}:{time.time_ns()}", acquired_at=utcnow()))
        with pytest.raises(LedgerBusy):
            led.acquire_lock("col")
    finally:
        led.close()


RACE = (
    "import sys, time\nfrom indexops.ledger import Ledger\n"
    "t = float(sys.argv[2])\nwhile time.time() < t: pass\n"
    "led = Ledger.for_workspace(sys.argv[1]); led.ensure_state('col', {'r': 1}); print('ok')\n"
)


def test_processes_opening_a_new_ledger_together_all_succeed(tmp_path):
    """Before the fix two openers raced in CREATE TABLE ("table documents already exists",
    "database is locked") in 24 of 25 tries."""
    for k in range(2):
        ws = tmp_path / f"ws{k}"
        start = f"{time.time() + 1.0:.3f}"  # both past their imports, then go at once
        procs = [subprocess.Popen([sys.executable, "-c", RACE, str(ws), start], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(60) for p in procs]
        assert [o[0].strip() for o in outs] == ["ok", "ok"], outs
        led = Ledger.for_workspace(ws)
        assert led.state("col") is not None
        led.close()
