"""Full ingest of a BEIR corpus versus our own encoder alone and plain torch
`SentenceTransformer.encode`, both on exactly the chunk texts the ingest embedded, measured in one
run (three child processes, one after the other, so each peak RSS is its own).

    python bench/ingest_scifact.py                 # whole ../shared/data/scifact corpus
    python bench/ingest_scifact.py --quick         # 40 documents: keeps the script working in CI
    python bench/ingest_scifact.py --repeats 3     # ingest and our encoder alternate three times: medians
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children_peak_rss_mib() -> float:
    """The largest peak of any finished child (the encoder workers, once the pool is shut down)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def child_ingest(data: Path, limit: int | None, texts_out: Path, config: str | None) -> dict:
    """Ingest through the indexops pipeline; record the texts handed to the encoder."""
    t0 = time.perf_counter()  # imports count on both sides
    from indexops.embed.pool import shutdown_pools
    from indexops.index.context import open_index
    from indexops.ingest.driver import ingest_path
    from indexops.settings import load_settings

    src = data
    if limit:
        src = Path(tempfile.mkdtemp(prefix="bench-beir-"))
        with open(data / "corpus.jsonl") as f, open(src / "corpus.jsonl", "w") as g:
            for i, line in enumerate(f):
                if i >= limit:
                    break
                g.write(line)
    ctx = open_index(Path(tempfile.mkdtemp(prefix="bench-ws-")), load_settings(config))
    seen: list[str] = []
    real_embed = ctx.embedder.embed

    enc_time = [0.0]

    def recording_embed(texts, progress=None, **hints):
        seen.extend(texts)
        t = time.perf_counter()
        try:
            return real_embed(texts, progress, **hints)
        finally:
            enc_time[0] += time.perf_counter() - t

    ctx.embedder.embed = recording_embed  # type: ignore[method-assign]
    r = ingest_path(ctx, src, "beir")
    ctx.close()
    shutdown_pools()
    wall = time.perf_counter() - t0
    texts_out.write_text(json.dumps(seen))
    return {
        "wall_s": wall, "chunks": len(seen), "documents": r["snapshot"]["documents"], "snapshot_id": r["snapshot"]["snapshot_id"],
        "stages_s": r["timings_s"], "peak_rss_mib": _peak_rss_mib(), "worker_peak_rss_mib": _children_peak_rss_mib(),
        "encoder_s": enc_time[0], "workers": getattr(ctx.embedder, "workers", 1),
    }


def child_plain(texts_in: Path, batch_size: int) -> dict:
    """The floor: load the same model and encode the same texts, nothing else."""
    texts = json.loads(texts_in.read_text())
    t0 = time.perf_counter()  # imports count on both sides
    from sentence_transformers import SentenceTransformer

    from indexops.embed.protocol import resolve_model_path

    m = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    m.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    end = time.perf_counter()
    return {"wall_s": end - t0, "load_s": load, "encode_s": end - t1, "chunks": len(texts), "peak_rss_mib": _peak_rss_mib()}


def child_own(texts_in: Path, config: str | None, count_tokens: bool = False) -> dict:
    """Our own encoder (the backend the config selects, e.g. ONNX int8) on the same texts, alone.
    `count_tokens`: first count each text's tokens (timed) and hand the counts to the pool, as the
    ingest hands it the chunker's counts, so both cut slices that pad as little."""
    texts = json.loads(texts_in.read_text())
    t0 = time.perf_counter()
    from indexops.embed.factory import make_embedder
    from indexops.settings import load_settings

    from indexops.embed.pool import shutdown_pools
    from indexops.index.context import embedding_spec, pooled

    s = load_settings(config)
    spec = embedding_spec(s)
    backend = spec["backend"]
    emb = pooled(make_embedder(**spec), s)
    load = time.perf_counter() - t0  # the model loads on first use, in-process or in the workers: encode_s includes it
    t1 = time.perf_counter()
    lengths = None
    if count_tokens:
        tok = emb.tokenizer()
        tok.warm(texts)  # one batched call of the model's tokenizer
        lengths = [len(tok.spans(t)) for t in texts]
    emb.embed(texts, lengths=lengths)
    end = time.perf_counter()
    shutdown_pools()
    return {"wall_s": end - t0, "load_s": load, "encode_s": end - t1, "chunks": len(texts), "peak_rss_mib": _peak_rss_mib(),
            "worker_peak_rss_mib": _children_peak_rss_mib(), "backend": backend, "workers": getattr(emb, "workers", 1)}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None, help="only the first N documents")
    ap.add_argument("--quick", action="store_true", help="40 documents (CI smoke run)")
    ap.add_argument("--config", default=None, help="YAML overlay for the ingest side")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--repeats", type=int, default=1, help="ingest and own-encoder runs, alternating (medians shown)")
    ap.add_argument("--own-counts-tokens", action="store_true",
                    help="our encoder alone first counts each text's tokens (timed) to sort its slices, as ingest does with the chunker's counts")
    ap.add_argument("--child", choices=["ingest", "plain", "own"], help=argparse.SUPPRESS)
    ap.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child == "ingest":
        import logging

        logging.disable(logging.WARNING)
        print(json.dumps(child_ingest(a.data, a.limit, a.texts, a.config)))
        return
    if a.child == "plain":
        print(json.dumps(child_plain(a.texts, 64)))
        return
    if a.child == "own":
        print(json.dumps(child_own(a.texts, a.config, a.own_counts_tokens)))
        return
    limit = 40 if a.quick else a.limit
    if not (a.data / "corpus.jsonl").exists():
        if a.quick:
            a.data = REPO / "tests" / "data" / "mini_beir"
        else:
            raise SystemExit(f"no corpus at {a.data}; pass --data DIR (BEIR layout)")
    texts = Path(tempfile.mkdtemp(prefix="bench-texts-")) / "texts.json"
    common = ["--data", str(a.data), "--texts", str(texts)] + (["--limit", str(limit)] if limit else []) + (["--config", a.config] if a.config else [])
    # ingest and our encoder alternate, so a slow spell of this shared VM (±20% between runs) hits
    # both; each row shows the median run and the ratio is of the medians
    ings, owns = [], []
    for _ in range(a.repeats):
        ings.append(_child(["--child", "ingest", *common]))
        owns.append(_child(["--child", "own", "--texts", str(texts)] + (["--config", a.config] if a.config else [])
                           + (["--own-counts-tokens"] if a.own_counts_tokens else [])))
    ing = sorted(ings, key=lambda r: r["wall_s"])[len(ings) // 2]
    own = sorted(owns, key=lambda r: r["wall_s"])[len(owns) // 2]
    plain = _child(["--child", "plain", "--texts", str(texts)])
    cmd = ("python bench/ingest_scifact.py" + (" --quick" if a.quick else f" --limit {limit}" if limit else "")
           + (f" --repeats {a.repeats}" if a.repeats != 1 else "") + (f" --config {a.config}" if a.config else "")
           + (" --own-counts-tokens" if a.own_counts_tokens else ""))
    res = {
        "ingest_runs_s": [r["wall_s"] for r in ings], "own_encoder_runs_s": [r["wall_s"] for r in owns],
        "command": cmd, "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "documents": ing["documents"], "chunks": ing["chunks"], "ingest": ing, "own_encoder": own, "plain_encode": plain,
        "ratio_ingest_over_own_encoder": ing["wall_s"] / own["wall_s"],
        "ratio_ingest_over_encode": ing["wall_s"] / plain["wall_s"],
    }
    def rss(r: dict) -> str:
        w = r.get("workers", 1)
        return f"{r['peak_rss_mib']:.0f}" + (f" + {w} x {r['worker_peak_rss_mib']:.0f}" if w > 1 else "")

    enc = f"{own['backend']}, {own.get('workers', 1)} process(es)"
    rows = [
        (f"indexops ingest (whole pipeline, {enc}, incl. model load)", ing["wall_s"], ing["chunks"] / ing["wall_s"], rss(ing)),
        (f"our encoder alone ({enc}, incl. model load)", own["wall_s"], own["chunks"] / own["wall_s"], rss(own)),
        ("plain SentenceTransformer.encode, torch fp32 (incl. model load)", plain["wall_s"], plain["chunks"] / plain["wall_s"], rss(plain)),
    ]
    print(f"\n{res['documents']} documents -> {res['chunks']} chunks embedded ({res['machine']})\n")
    print("| run | wall s | chunks/s | peak RSS MiB (main + workers) |\n|---|---:|---:|---:|")
    for name, w, cps, mem in rows:
        print(f"| {name} | {w:.1f} | {cps:.1f} | {mem} |")
    if a.repeats > 1:
        print(f"\nruns, in order: ingest {' / '.join(f'{x:.1f}' for x in res['ingest_runs_s'])} s; "
              f"our encoder {' / '.join(f'{x:.1f}' for x in res['own_encoder_runs_s'])} s")
    print(f"\nratio ingest / our encoder alone (overhead we own): {res['ratio_ingest_over_own_encoder']:.3f}")
    print(f"ratio ingest / plain torch encode (whole process work, imports + model load included): {res['ratio_ingest_over_encode']:.3f}")
    print(f"encoder time inside ingest {ing['encoder_s']:.1f} s (incl. model load) vs plain encode call {plain['encode_s']:.1f} s + load {plain['load_s']:.1f} s")
    print("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in ing["stages_s"].items()))
    print(f"command: {cmd}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
