"""The per-index writer lock, so two ingests never interleave writes; a dead holder's lock is stale."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from indexops.ledger.rows import _aware
from indexops.ledger.schema import locks, utcnow


class LedgerBusy(RuntimeError):
    """Another ingest holds the index lock."""


class IndexLockRepository:
    """The `locks` table."""

    engine: Engine

    def acquire_lock(self, name: str, wait_s: float = 0.0, stale_after_s: float = 6 * 3600) -> str:
        """Take the per-index lock so two ingests never interleave writes.

        Raises:
            LedgerBusy: another live owner holds it after `wait_s` seconds.
        """
        owner = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with self.engine.begin() as c:
                    row = c.execute(select(locks).where(locks.c.name == name)).first()
                    if row is not None and _lock_is_stale(row.owner, _aware(row.acquired_at), stale_after_s):
                        c.execute(delete(locks).where(locks.c.name == name, locks.c.owner == row.owner))
                    c.execute(insert(locks).values(name=name, owner=owner, acquired_at=utcnow()))
                return owner
            except IntegrityError:
                if time.monotonic() >= deadline:
                    with self.engine.connect() as c:
                        row = c.execute(select(locks).where(locks.c.name == name)).first()
                    holder = row.owner if row else "?"
                    raise LedgerBusy(f"index {name!r} is being ingested by {holder}; try again when it finishes") from None
                time.sleep(0.5)

    def release_lock(self, name: str, owner: str) -> None:
        with self.engine.begin() as c:
            c.execute(delete(locks).where(locks.c.name == name, locks.c.owner == owner))


def _lock_is_stale(owner: str, acquired_at: datetime | None, stale_after_s: float) -> bool:
    """A lock whose process on this host is gone (e.g. SIGKILL) is stale at once."""
    host, _, rest = owner.partition(":")
    pid, _, ns = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return _same_live_process(int(pid), int(ns) / 1e9 if ns.isdigit() else None) is False
    return acquired_at is not None and (utcnow() - acquired_at).total_seconds() > stale_after_s


def _same_live_process(pid: int, acquired_s: float | None) -> bool | None:
    """Whether `pid` is still the running process that took the lock (Linux /proc; None: unknown).

    A killed holder whose parent has not reaped it yet is a zombie that `kill(pid, 0)` still
    finds, and a recycled pid belongs to a process started after the lock was taken: in both
    cases the holder is dead.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            return False
        if acquired_s is None:
            return True
        btime = next(int(l.split()[1]) for l in Path("/proc/stat").read_text().splitlines() if l.startswith("btime "))
        started = btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return started <= acquired_s + 2.0  # btime has one-second resolution
    except (OSError, ValueError, IndexError, StopIteration):
        return None
