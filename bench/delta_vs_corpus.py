"""Cost of a 1,000-document delta versus corpus size: the same delta (500 updates, 300 new
documents, 200 deletes) into synthetic corpora of 10k, 100k and 1M documents, hashing embedder.
The base corpus is ingested once per size (timed too); the delta runs in a fresh child process
so its wall time and peak RSS are its own (imports included, no Prefect: the core driver).

    python bench/delta_vs_corpus.py                    # 10k, 100k, 1M
    python bench/delta_vs_corpus.py --sizes 10000,100000
    python bench/delta_vs_corpus.py --quick            # 2k and 4k: keeps the script working in CI
    python bench/delta_vs_corpus.py --cache /tmp/scale # keep each base corpus; later runs delta a copy of it
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
CONFIG = REPO / "configs" / "hashing.yaml"

from bytecode import compile_repo  # noqa: E402 - bench/ is on the path only from here


def child(mode: str, feed: str, ws: str) -> dict:
    t0 = time.perf_counter()
    from indexops.index.context import open_index
    from indexops.ingest.driver import ingest_path
    from indexops.settings import load_settings

    from indexops.index.replicas import disk_usage

    ctx = open_index(Path(ws), load_settings(CONFIG))
    try:
        s = ingest_path(ctx, feed, "delta", feed="synthetic")
    finally:
        ctx.close()
    wall = time.perf_counter() - t0
    return {"mode": mode, "wall_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "counts": s["counts"], "timings_s": s.get("timings_s", {}), "snapshot_id": s["snapshot"]["snapshot_id"],
            "chunks": s["snapshot"]["chunks"], "published": s["snapshot"].get("published"), "disk": disk_usage(ws, ctx.collection)}


def _run_child(mode: str, feed: Path, ws: Path) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", mode, str(feed), str(ws)], capture_output=True, text=True,
                       env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
    if p.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _base(n: int, root: Path, cache: Path | None) -> tuple[Path, Path, dict]:
    """The feed, workspace and base-ingest record of an n-document corpus. With a cache folder the
    pristine base is kept there and the deltas run on a copy at the same path (the 1M base takes
    most of an hour; its deltas take seconds)."""
    from synth_corpus import write_feed

    home = cache or root
    feed, ws, pristine, record = home / f"feed-{n}", home / f"ws-{n}", home / f"ws-{n}.base", home / f"base-{n}.json"
    if cache and record.exists() and pristine.is_dir():
        base = json.loads(record.read_text())
    else:
        shutil.rmtree(feed, ignore_errors=True)
        shutil.rmtree(ws, ignore_errors=True)
        write_feed(feed, n)
        base = _run_child("base", feed, ws)
        if not cache:
            return feed, ws, base
        shutil.rmtree(pristine, ignore_errors=True)
        ws.rename(pristine)
        record.write_text(json.dumps(base))
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(pristine, ws)
    os.sync()  # the copy's dirty pages are written back now, not by the first delta's fsync (~2 s of a 6 GB copy at 1M)
    return feed, ws, base


def measure(n: int, root: Path, delta_size: int, repeats: int, cache: Path | None = None) -> dict:
    """Base ingest, then `repeats` deltas of the same shape one after the other (seeds 5, 6, ...:
    the same records at every corpus size), each in a fresh process; the median is reported."""
    from synth_corpus import delta

    feed, ws, base = _base(n, root, cache)
    runs, written = [], []
    try:
        for r in range(repeats):
            written.append(feed / f"9999{r:02d}-delta.jsonl")
            with open(written[-1], "w", encoding="utf-8") as f:
                for rec in delta(n, delta_size, seed=5 + r, new_from=r * delta_size):
                    f.write(json.dumps(rec) + "\n")
            runs.append(_run_child("delta", feed, ws))
        size_mib = sum(f.stat().st_size for f in ws.rglob("*") if f.is_file()) / 2**20
    finally:
        for f in written:
            f.unlink(missing_ok=True)
        if not cache:
            shutil.rmtree(feed, ignore_errors=True)
        shutil.rmtree(ws, ignore_errors=True)
    med = sorted(runs, key=lambda d: d["wall_s"])[len(runs) // 2]
    return {"docs": n, "base": base, "delta": {**med, "peak_rss_mib": statistics.median(d["peak_rss_mib"] for d in runs)},
            "delta_runs": runs, "workspace_mib": size_mib}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--delta", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3, help="deltas per corpus size (the median is reported)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="keep base corpora here and delta a copy of them")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "FEED", "WS"))
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    compile_repo()
    sizes = [2000, 4000] if a.quick else [int(x) for x in a.sizes.split(",")]
    delta_size = 200 if a.quick else a.delta
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    if a.cache:
        a.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in sizes:
            r = measure(n, root, delta_size, 1 if a.quick else a.repeats, a.cache)
            rows.append(r)
            print(f"  {n:>9,} docs: base {r['base']['wall_s']:.1f} s, delta {r['delta']['wall_s']:.2f} s, "
                  f"delta peak RSS {r['delta']['peak_rss_mib']:.0f} MiB", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows.sort(key=lambda r: r["docs"])  # sizes may be measured largest first; ratios are to the smallest
    first = rows[0]["delta"]
    print(f"\n{delta_size:,}-document delta (50% updates, 30% new, 20% deletes) into corpora of growing size; "
          f"hashing embedder; {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| corpus docs | base ingest s | base docs/s | delta wall s | delta / smallest | delta peak RSS MiB | RSS / smallest | workspace MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b, d = r["base"], r["delta"]
        print(f"| {r['docs']:,} | {b['wall_s']:.1f} | {r['docs'] / b['wall_s']:.0f} | {d['wall_s']:.2f} | {d['wall_s'] / first['wall_s']:.2f} | "
              f"{d['peak_rss_mib']:.0f} | {d['peak_rss_mib'] / first['peak_rss_mib']:.2f} | {r['workspace_mib']:.0f} |")
    print("\nPublishing for readers (the replica readers open; README \"Reading while ingesting\"): the base's first publish "
          "copies the shard, a delta's copies what it touched and hard-links the rest from the previous replica.\n")
    print("| corpus docs | chunks | first publish s | delta publish s | publish share of delta wall | delta MiB copied | MiB linked "
          "| writer shard MiB | replicas MiB (retention 3) | replicas / writer |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b, d = r["base"], r["delta"]
        bp, dp, disk = b.get("published") or {}, d.get("published") or {}, d.get("disk") or {}
        if not dp:
            continue
        print(f"| {r['docs']:,} | {d['chunks']:,} | {bp.get('seconds', float('nan')):.2f} | {dp['seconds']:.2f} | "
              f"{dp['seconds'] / d['wall_s']:.0%} | {dp['bytes_copied'] / 2**20:.0f} | {dp['bytes_linked'] / 2**20:.0f} | "
              f"{disk['writer_bytes'] / 2**20:.0f} | {disk['replica_bytes'] / 2**20:.0f} | {disk['replica_bytes'] / max(disk['writer_bytes'], 1):.2f} |")
    print("\ndelta stages (s):", {r["docs"]: {k: round(v, 2) for k, v in r["delta"]["timings_s"].items()} for r in rows})
    print("command: python bench/delta_vs_corpus.py" + (" --quick" if a.quick else f" --sizes {a.sizes} --repeats {a.repeats}")
          + (f" --cache {a.cache}" if a.cache else ""))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
