"""Encode on every core with one single-threaded model per process.

A small encoder (MiniLM: 6 layers, 384 wide) does not keep two intra-op threads busy: softmax,
layer norms and the many small matrix products synchronise the threads per op. Two processes with
one thread each encode ~1.5x as many texts per second on 2 cores as one process with two threads
(README "Encoder backends"). Small inputs stay in-process: starting the workers (interpreter,
imports, model load) costs a few seconds that a 50-document delta would notice.

Workers are plain child interpreters (`python -m indexops.embed.pool`) fed length-prefixed pickles
over their stdin/stdout, not `multiprocessing`: spawning through multiprocessing re-imports the
caller's `__main__`, which breaks scripts and notebooks without a main guard.
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from indexops.embed.cpu import cpu_cores
from indexops.embed.factory import make_embedder
from indexops.embed.protocol import Embedder, EmbedsTokenIds, ExportsModelFile, ProgressFn, Tokenizer

_HEADER = struct.Struct("<Q")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the worker imports this same indexops
_POOLS: dict[tuple[Any, ...], _Dispatcher] = {}
_LOCK = threading.Lock()


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("worker closed its pipe")
    size = _HEADER.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("worker closed its pipe mid-message")
    return pickle.loads(data)


class WorkerDied(RuntimeError):
    """An encoder worker exited (OOM killer, signal) or could not load the model."""


class _Worker:
    def __init__(self, spec: dict[str, Any], threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "indexops.embed.pool", repr((spec, threads))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def encode(self, texts: list[str], ids: list[bytes] | None = None) -> np.ndarray:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            _send(self.proc.stdin, (texts, ids))
            status, payload = _recv(self.proc.stdout)
        except (EOFError, BrokenPipeError, OSError) as exc:
            code = self.proc.poll()
            raise WorkerDied(f"an encoder worker exited (code {code}): {exc}") from exc
        if status != "ok":
            raise WorkerDied(f"an encoder worker failed: {payload}")
        return payload

    def stop(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # EOF: the worker's loop ends
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


class _Slice:
    """Texts one worker encodes in one request (with their token ids when every one has them), and
    the reply once it came (vectors or the error)."""

    __slots__ = ("texts", "ids", "job", "done", "result")

    def __init__(self, texts: list[str], job: int, ids: list[bytes] | None = None) -> None:
        self.texts = texts
        self.ids = ids
        self.job = job
        self.done = threading.Event()
        self.result: np.ndarray | BaseException | None = None


class _Dispatcher:
    """The worker processes of one pool and the queue they pull slices from, one feeding thread
    per worker, for the life of the pool: a caller can queue the next batch's texts while it
    waits for this one's, so the workers never wait for the caller."""

    def __init__(self, spec: dict[str, Any], threads: int, n: int) -> None:
        self.workers = [_Worker(spec, threads) for _ in range(n)]
        self.cond = threading.Condition()
        self.queue: deque[_Slice] = deque()
        self.closed = False
        for w in self.workers:
            threading.Thread(target=self._feed, args=(w,), daemon=True).start()

    def put(self, slices: Sequence[_Slice], urgent: bool = False) -> None:
        with self.cond:
            if self.closed:
                raise WorkerDied("the encoder pool was stopped")
            if urgent:
                self.queue.extendleft(reversed(slices))
            else:
                self.queue.extend(slices)
            self.cond.notify_all()

    def cancel(self, max_job: int) -> None:
        """Drop queued slices of jobs up to `max_job` that no worker started (nobody waits for them)."""
        with self.cond:
            self.queue = deque(s for s in self.queue if s.job > max_job)

    def _feed(self, w: _Worker) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                s = self.queue.popleft()
            try:
                s.result = w.encode(s.texts, s.ids)
            except BaseException as exc:  # a dead worker breaks the pool: every waiter hears it
                s.result = exc
                self._fail(exc)
                return
            finally:
                s.done.set()

    def _fail(self, exc: BaseException) -> None:
        with self.cond:
            self.closed = True
            for q in self.queue:
                q.result = exc
                q.done.set()
            self.queue.clear()
            self.cond.notify_all()

    def stop(self, kill: bool = False) -> None:
        self._fail(WorkerDied("the encoder pool was stopped"))
        for w in self.workers:
            if kill:
                w.proc.kill()
                w.proc.wait()
            else:
                w.stop()


def shutdown_pools() -> None:
    """Stop every worker process this process started (also run at exit)."""
    with _LOCK:
        for pool in _POOLS.values():
            pool.stop()
        _POOLS.clear()


atexit.register(shutdown_pools)


class PooledEmbedder:
    """An embedder that hands large inputs to `workers` processes (kept for the life of this process).

    `prefetch(texts)` queues texts a later `embed` will probably ask for (the next batch of an
    ingest) behind what is queued; `embed` takes what is in flight or done and queues the rest
    first. Texts prefetched but never asked for are dropped, unencoded if no worker started them.
    A prefetch too small to start the workers is ignored: `embed` encodes it in this process.
    Both take optional `lengths` (tokens per text, e.g. counted by the chunker): slices are then cut
    from texts sorted by tokens rather than characters, which pads ~5% less on SciFact chunks; and
    optional `ids` (each text's token ids, `Chunk.token_ids`): a slice whose texts all have them is
    encoded from them, where the worker's embedder can (`embed_token_ids`), without tokenizing again.

    Args:
        local: the in-process embedder (dim, fingerprint, tokenizer, small inputs).
        spec: `make_embedder` keyword arguments that rebuild `local` in a worker.
        workers: processes; each runs `max(1, cores // workers)` threads.
        min_texts: fewer texts are encoded in-process, unless the workers already run (then from 32 on).
        slice_size: texts per request (cut from length-sorted texts, so each pads little).
    """

    def __init__(self, local: Embedder, spec: dict[str, Any], workers: int, min_texts: int = 256, slice_size: int = 64,
                 cores: int | None = None) -> None:
        self.local = local
        self.spec = spec
        self.workers = workers
        self.min_texts = min_texts
        self.slice_size = slice_size
        self.threads = max(1, (cores or cpu_cores()) // workers)
        self.model_id = local.model_id
        self.dim = local.dim
        self._flight: dict[str, tuple[_Slice, int]] = {}  # text -> (its slice, row in the slice)
        self._flight_pool: _Dispatcher | None = None  # the pool those slices went to
        self._job = 0

    def fingerprint(self) -> str:
        return self.local.fingerprint()

    def tokenizer(self) -> Tokenizer:
        return self.local.tokenizer()

    def _key(self) -> tuple[Any, ...]:
        return (tuple(sorted(self.spec.items())), self.workers, self.threads)

    def _pool(self) -> _Dispatcher:
        with _LOCK:
            key = self._key()
            if key in _POOLS and _POOLS[key].closed:  # broken or stopped: nothing of it can be used
                _POOLS.pop(key).stop(kill=True)
            if key not in _POOLS:
                self._flight.clear()
                if isinstance(self.local, ExportsModelFile):  # export/quantise the ONNX file once, before the workers look for it
                    self.local.model_path()
                _POOLS[key] = _Dispatcher(self.spec, self.threads, self.workers)
            return _POOLS[key]

    def _drop_pool(self) -> None:
        self._flight.clear()
        with _LOCK:
            pool = _POOLS.pop(self._key(), None)
        if pool is not None:
            pool.stop(kill=True)

    def _forget_stopped(self) -> None:
        """Slices queued to a pool stopped since (shutdown_pools, a dead worker) will never come."""
        if self._flight and _POOLS.get(self._key()) is not self._flight_pool:
            self._flight.clear()

    def _queue(self, texts: Sequence[str], urgent: bool, lengths: Sequence[int | None] | None = None,
               ids: Sequence[bytes | None] | None = None) -> int:
        """Queue the texts not in flight yet as one job (length-sorted slices); returns the job."""
        new = [t for t in dict.fromkeys(texts) if t not in self._flight]
        tokens = dict(zip(texts, lengths)) if lengths is not None else {}
        token_ids = dict(zip(texts, ids)) if ids is not None else {}
        if new and all(tokens.get(t) is not None for t in new):
            new.sort(key=tokens.__getitem__)
        else:
            new.sort(key=len)
        self._job += 1
        if not new:
            return self._job
        pool = self._pool()  # first: a new pool forgets what the old one had in flight
        self._flight_pool = pool
        step = min(self.slice_size, -(-len(new) // self.workers))  # every worker gets a share of a small input
        slices = [_Slice(part, self._job, _all_or_none([token_ids.get(t) for t in part]))
                  for part in (new[s : s + step] for s in range(0, len(new), step))]
        for sl in slices:
            for i, t in enumerate(sl.texts):
                self._flight[t] = (sl, i)
        pool.put(slices, urgent)
        return self._job

    def prefetch(self, texts: Sequence[str], lengths: Sequence[int | None] | None = None,
                 ids: Sequence[bytes | None] | None = None) -> None:
        """Queue texts for a later `embed` call; small inputs start no workers (and are ignored)."""
        self._forget_stopped()
        if self.workers < 2 or (len(texts) < self.min_texts and self._key() not in _POOLS):
            return
        try:
            self._queue(texts, urgent=False, lengths=lengths, ids=ids)
        except BaseException:
            self._drop_pool()
            raise

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None, lengths: Sequence[int | None] | None = None,
              ids: Sequence[bytes | None] | None = None) -> np.ndarray:
        self._forget_stopped()
        n = len(texts)
        threshold = min(self.min_texts, 32) if self._key() in _POOLS else self.min_texts
        if self.workers < 2 or (n < threshold and not any(t in self._flight for t in texts)):
            return self.local.embed(texts, progress)
        try:
            own = self._queue(texts, urgent=True, lengths=lengths, ids=ids)  # what nobody prefetched goes before the prefetched rest
            slots = [self._flight[t] for t in texts]
            wanted: dict[int, int] = {}  # slice -> how many of this call's texts it holds
            for sl, _ in slots:
                wanted[id(sl)] = wanted.get(id(sl), 0) + 1
            slices = list({id(sl): sl for sl, _ in slots}.values())
            done = 0
            for sl in slices:
                sl.done.wait()
                if isinstance(sl.result, BaseException):
                    raise sl.result if isinstance(sl.result, WorkerDied) else WorkerDied(str(sl.result))
                done += wanted[id(sl)]
                if progress:
                    progress(done, n)
            out = np.zeros((n, self.dim), dtype=np.float32)
            for k, (sl, i) in enumerate(slots):
                out[k] = sl.result[i]  # type: ignore[index]
        except BaseException:
            self._drop_pool()  # a worker died or we were interrupted: the next call starts fresh ones
            raise
        # what was prefetched before the newest job this call used is not wanted any more
        used = max((sl.job for sl in slices if sl.job != own), default=0)
        for t in texts:
            self._flight.pop(t, None)
        if used:
            self._flight = {t: v for t, v in self._flight.items() if v[0].job > used}
            if self._key() in _POOLS:
                _POOLS[self._key()].cancel(used)
        return out


def _all_or_none(ids: list[bytes | None]) -> list[bytes] | None:
    return None if any(x is None for x in ids) else ids  # type: ignore[return-value]


def _serve(spec: dict[str, Any], threads: int) -> None:
    """Worker loop: read (texts, token ids or None), answer ("ok", vectors) or ("error", message),
    until EOF. The ids are used where the embedder frames them as its tokenizer would."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the reply stream
    inp = sys.stdin.buffer
    try:
        if spec["backend"] == "torch":
            import torch

            torch.set_num_threads(threads)
        emb: Embedder = make_embedder(**spec, threads=threads)
    except Exception as exc:  # answered to the first request, so the parent sees why
        emb, failure = None, f"{type(exc).__name__}: {exc}"  # type: ignore[assignment]
    while True:
        try:
            texts, ids = _recv(inp)
        except EOFError:
            return
        if emb is None:
            _send(out, ("error", failure))
            continue
        try:
            if ids is not None and isinstance(emb, EmbedsTokenIds) and emb.token_ids_template() is not None:
                _send(out, ("ok", emb.embed_token_ids(ids)))
            else:
                _send(out, ("ok", emb.embed(texts)))
        except Exception as exc:
            _send(out, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    import ast

    _spec, _threads = ast.literal_eval(sys.argv[1])
    _serve(_spec, _threads)
