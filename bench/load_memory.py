"""Memory of one long load: a synthetic corpus in many batch files ingested by one process (the
core driver, hashing embedder), RSS and peak RSS printed after every file. Shows whether memory
stays flat as the index grows (`ingest.compact_store_every_points`) or follows the load.

    python bench/load_memory.py --docs 60000 --per-file 10000                 # default settings
    python bench/load_memory.py --docs 60000 --per-file 10000 --compact-every none
    python bench/load_memory.py --quick                                        # 6k docs: CI smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
CONFIG = REPO / "configs" / "hashing.yaml"

from synth_corpus import write_feed  # noqa: E402 - bench/ is on the path only from here


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=60_000)
    ap.add_argument("--per-file", type=int, default=10_000)
    ap.add_argument("--compact-every", default=None, help="points between compactions; 'none' turns it off (default: the config's)")
    ap.add_argument("--feed", type=Path, default=None, help="reuse (or write) the feed here")
    ap.add_argument("--quick", action="store_true", help="6,000 documents in 1,000-document files, compaction every 2,000 points")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    if a.quick:
        a.docs, a.per_file, a.compact_every = 6_000, 1_000, a.compact_every or "2000"
    from indexops.index.context import open_index
    from indexops.ingest.driver import validate_unit
    from indexops.ingest.read_ahead import UnitsAhead
    from indexops.ingest.units import plan_source
    from indexops.ingest.stages import apply_batch, new_run_id
    from indexops.settings import load_settings

    feed = a.feed or Path(tempfile.mkdtemp(prefix="bench-load-")) / "feed"
    if not feed.exists():
        write_feed(feed, a.docs, a.per_file)
    settings = load_settings(CONFIG)
    if a.compact_every is not None:
        settings.ingest.compact_store_every_points = None if a.compact_every == "none" else int(a.compact_every)
    ctx = open_index(Path(tempfile.mkdtemp(prefix="bench-load-ws-")), settings)
    rows = []
    t0 = time.perf_counter()
    try:
        sp = plan_source(ctx, feed, "delta", "synthetic")
        run, points = new_run_id(), 0
        for unit in UnitsAhead(ctx, sp.units, sp.feed):
            res = validate_unit(ctx, unit, sp.feed, run)
            t: dict[str, float] = {}
            c = apply_batch(ctx, res.good, sp.feed, run, quarantined=res.bad, applied_file=unit.applied_file, timings=t)
            points += c.chunks_embedded
            rows.append({"file": unit.label, "points": points, "wall_s": time.perf_counter() - t0, "rss_mib": _rss_mib(),
                         "peak_mib": _peak_mib(), "compact_s": t.get("compact", 0.0)})
            r = rows[-1]
            print(f"{r['file']}: {points} points, {r['wall_s']:.0f} s, RSS {r['rss_mib']:.0f} MiB, peak {r['peak_mib']:.0f} MiB"
                  + (f", compacted in {r['compact_s']:.1f} s" if r["compact_s"] else ""), flush=True)
    finally:
        ctx.close()
    cmd = (f"python bench/load_memory.py --docs {a.docs} --per-file {a.per_file}"
           + (f" --compact-every {a.compact_every}" if a.compact_every is not None else ""))
    print(f"\n{platform.machine()}, Python {platform.python_version()}; compaction every "
          f"{settings.ingest.compact_store_every_points or 'never'} points\ncommand: {cmd}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": cmd, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
