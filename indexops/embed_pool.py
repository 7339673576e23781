"""Encode on every core with one single-threaded model per process.

A small encoder (MiniLM: 6 layers, 384 wide) does not keep two intra-op threads busy: softmax,
layer norms and the many small matrix products synchronise the threads per op. Two processes with
one thread each encode ~1.5x as many texts per second on 2 cores as one process with two threads
(README "Encoder backends"). Small inputs stay in-process: starting the workers (interpreter,
imports, model load) costs a few seconds that a 50-document delta would notice.

Workers are plain child interpreters (`python -m indexops.embed_pool`) fed length-prefixed pickles
over their stdin/stdout, not `multiprocessing`: spawning through multiprocessing re-imports the
caller's `__main__`, which breaks scripts and notebooks without a main guard.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from indexops.embedders import Embedder, ProgressFn, Tokenizer, cpu_cores, make_embedder

_HEADER = struct.Struct("<Q")
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # the worker imports this same indexops
_POOLS: dict[tuple[Any, ...], list[_Worker]] = {}
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
        self.proc = subprocess.Popen([sys.executable, "-m", "indexops.embed_pool", repr((spec, threads))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def encode(self, texts: list[str]) -> np.ndarray:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            _send(self.proc.stdin, texts)
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


def shutdown_pools() -> None:
    """Stop every worker process this process started (also run at exit)."""
    with _LOCK:
        for workers in _POOLS.values():
            for w in workers:
                w.stop()
        _POOLS.clear()


atexit.register(shutdown_pools)


class PooledEmbedder:
    """An embedder that hands large inputs to `workers` processes (kept for the life of this process).

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

    def fingerprint(self) -> str:
        return self.local.fingerprint()

    def tokenizer(self) -> Tokenizer:
        return self.local.tokenizer()

    def _key(self) -> tuple[Any, ...]:
        return (tuple(sorted(self.spec.items())), self.workers, self.threads)

    def _pool(self) -> list[_Worker]:
        with _LOCK:
            key = self._key()
            if key not in _POOLS:
                prepare = getattr(self.local, "model_path", None)
                if prepare is not None:  # export/quantise the ONNX file once, before the workers look for it
                    prepare()
                _POOLS[key] = [_Worker(self.spec, self.threads) for _ in range(self.workers)]
            return _POOLS[key]

    def _drop_pool(self) -> None:
        with _LOCK:
            for w in _POOLS.pop(self._key(), []):
                w.proc.kill()
                w.proc.wait()

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        n = len(texts)
        threshold = min(self.min_texts, 32) if self._key() in _POOLS else self.min_texts
        if self.workers < 2 or n < threshold:
            return self.local.embed(texts, progress)
        order = sorted(range(n), key=lambda i: len(texts[i]))
        step = min(self.slice_size, -(-n // self.workers))  # every worker gets a share of a small input
        todo: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        slices = [order[s : s + step] for s in range(0, n, step)]
        for idx in slices:
            todo.put(idx)
        results: queue.SimpleQueue[tuple[list[int], np.ndarray | BaseException]] = queue.SimpleQueue()
        stop = threading.Event()

        def feed(w: _Worker) -> None:  # one thread per worker pulls slices until none are left
            while not stop.is_set():
                try:
                    idx = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.put((idx, w.encode([texts[i] for i in idx])))
                except BaseException as exc:  # handed to the caller's thread below
                    results.put((idx, exc))
                    return

        threads = [threading.Thread(target=feed, args=(w,), daemon=True) for w in self._pool()]
        for t in threads:
            t.start()
        out = np.zeros((n, self.dim), dtype=np.float32)
        done = 0
        try:
            for _ in slices:
                idx, res = results.get()
                if isinstance(res, BaseException):
                    raise res
                out[idx] = res
                done += len(idx)
                if progress:
                    progress(done, n)
        except BaseException:
            stop.set()
            self._drop_pool()  # a worker died or we were interrupted: the next call starts fresh ones
            raise
        finally:
            for t in threads:
                t.join(timeout=1)
        return out


def _serve(spec: dict[str, Any], threads: int) -> None:
    """Worker loop: read a list of texts, answer ("ok", vectors) or ("error", message), until EOF."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the reply stream
    inp = sys.stdin.buffer
    try:
        if spec["backend"] in ("torch", "torch-bf16"):
            import torch

            torch.set_num_threads(threads)
        emb: Embedder = make_embedder(**spec, threads=threads)
    except Exception as exc:  # answered to the first request, so the parent sees why
        emb, failure = None, f"{type(exc).__name__}: {exc}"  # type: ignore[assignment]
    while True:
        try:
            texts = _recv(inp)
        except EOFError:
            return
        if emb is None:
            _send(out, ("error", failure))
            continue
        try:
            _send(out, ("ok", emb.embed(texts)))
        except Exception as exc:
            _send(out, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    import ast

    _spec, _threads = ast.literal_eval(sys.argv[1])
    _serve(_spec, _threads)
