"""Encode speed and closeness to torch fp32 per encoder backend, on the same SciFact chunk texts.

    python bench/encoder_backends.py                # 1,000 chunk texts of ../shared/data/scifact
    python bench/encoder_backends.py --quick        # 50 texts (CI smoke run; tests/data/mini_beir without SciFact)
    python bench/encoder_backends.py --variants     # also other int8 quantisation settings (exploration)

Texts are the first chunks the default recipe makes (recursive, <= 256 model tokens, title prefixed).
Model load and the one-off ONNX export are timed apart from encoding. Cosine is against the torch
vectors of the same texts (a quality proxy; nDCG comes from `indexops benchmark beir`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"
MODEL = "all-MiniLM-L6-v2"
BACKENDS = "torch,onnx,onnx-int8,openvino,openvino-bf16"

VARIANTS = {  # name -> quantize_int8 keyword arguments (the shipped one is INT8_SETTINGS)
    "int8 QInt8 per-tensor": {"weight_type": "QInt8", "per_channel": False, "reduce_range": False},
    "int8 QInt8 per-channel reduce_range": {"weight_type": "QInt8", "per_channel": True, "reduce_range": True},
    "int8 QUInt8 per-channel": {"weight_type": "QUInt8", "per_channel": True, "reduce_range": False},
}


def chunk_texts(data: Path, n: int) -> list[str]:
    from indexops.embed.factory import make_embedder
    from indexops.ingest.chunking import Chunker
    from indexops.settings import Settings

    e = make_embedder(MODEL)
    chunker = Chunker(Settings().chunking, e.tokenizer(), tokenizer_id=e.fingerprint()[:16])
    out: list[str] = []
    with open(data / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.extend(c.embed_text for c in chunker.chunk(str(d["_id"]), d.get("title", ""), d.get("text", ""), {}).chunks)
            if len(out) >= n:
                break
    return list(dict.fromkeys(out))[:n]


def measure(name: str, embedder, texts: list[str], ref=None, warm: int = 2) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    embedder.embed(texts[:warm])  # model load / export / session start (and worker start for a pool)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    vecs = embedder.embed(texts)
    enc = time.perf_counter() - t1
    row = {"backend": name, "texts": len(texts), "load_s": load, "encode_s": enc, "docs_per_s": len(texts) / enc}
    if ref is not None:
        cos = (vecs * ref).sum(axis=1)
        row |= {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "cos_p01": float(np.quantile(cos, 0.01))}
    print(f"  {name}: {row['docs_per_s']:.1f} docs/s", file=sys.stderr, flush=True)
    return row, vecs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("-n", type=int, default=1000, help="chunk texts to encode")
    ap.add_argument("--quick", action="store_true", help="50 texts (CI smoke run)")
    ap.add_argument("--backends", default=BACKENDS)
    ap.add_argument("--variants", action="store_true", help="also the int8 quantisation settings of VARIANTS")
    ap.add_argument("--workers", type=int, default=2, help="encoder processes for the pooled rows (0/1: none)")
    ap.add_argument("--pooled", default="onnx-int8,openvino-bf16", help="backends measured on worker processes too")
    ap.add_argument("--batch-size", type=int, default=None, help="default: each backend's own best")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    n = 50 if a.quick else a.n
    if not (a.data / "corpus.jsonl").exists():
        if not a.quick:
            raise SystemExit(f"no corpus at {a.data}; pass --data DIR (BEIR layout)")
        a.data = REPO / "tests" / "data" / "mini_beir"

    from indexops.embed.cpu import cpu_cores
    from indexops.embed.factory import default_batch_size, make_embedder
    from indexops.embed.onnx import INT8_SETTINGS, OnnxEmbedder, quantize_int8

    from indexops.embed.pool import PooledEmbedder, shutdown_pools

    texts = chunk_texts(a.data, n)
    rows, ref = [], None
    for b in a.backends.split(","):
        row, vecs = measure(b, make_embedder(MODEL, backend=b, batch_size=a.batch_size), texts, ref)
        if b == "onnx-int8":
            row["quantization"] = INT8_SETTINGS
        if b == "torch":
            ref = vecs
        rows.append(row)
    if a.workers > 1:  # the same backends on worker processes, one thread each (what ingest does with large inputs)
        for b in a.pooled.split(","):
            spec = {"model": MODEL, "dim": 384, "batch_size": a.batch_size, "device": "cpu", "normalize": True, "backend": b}
            pool = PooledEmbedder(make_embedder(MODEL, backend=b, batch_size=a.batch_size), spec, a.workers, min_texts=1)
            row, _ = measure(f"{b}, {a.workers} processes x {pool.threads} thread", pool, texts, ref, warm=64)
            shutdown_pools()
            rows.append(row | {"workers": a.workers})
    if a.variants:
        fp32 = OnnxEmbedder(MODEL, backend="onnx").model_path()
        tmp = Path(tempfile.mkdtemp(prefix="indexops-int8-"))
        for i, (name, q) in enumerate(VARIANTS.items()):
            path = tmp / f"v{i}.onnx"
            quantize_int8(fp32, path, **q)
            e = OnnxEmbedder(MODEL, backend="onnx-int8", batch_size=a.batch_size or default_batch_size("onnx-int8"))
            e.model_path = lambda p=path: p  # type: ignore[method-assign]
            row, _ = measure(name, e, texts, ref)
            rows.append(row | {"quantization": q})

    cmd = "python bench/encoder_backends.py" + (" --quick" if a.quick else f" -n {n}" if n != 1000 else "") + (
        " --variants" if a.variants else "") + (f" --backends {a.backends}" if a.backends != BACKENDS else "") + (
        f" --pooled {a.pooled}" if a.pooled != "onnx-int8,openvino-bf16" else "")
    machine = f"{platform.machine()}, {cpu_cores()} cores, Python {platform.python_version()}"
    batch = a.batch_size or "each backend's default (indexops.embed.factory.default_batch_size)"
    print(f"\n{len(texts)} chunk texts of {a.data.name}, batch {batch} ({machine})\n")
    print("| backend | docs/s | encode s | load s | cosine to torch mean / min |\n|---|---:|---:|---:|---|")
    for r in rows:
        cos = f"{r['cos_mean']:.4f} / {r['cos_min']:.4f}" if "cos_mean" in r else "reference"
        print(f"| {r['backend']} | {r['docs_per_s']:.1f} | {r['encode_s']:.1f} | {r['load_s']:.1f} | {cos} |")
    print(f"\ncommand: {cmd}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": cmd, "machine": machine, "data": a.data.name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
