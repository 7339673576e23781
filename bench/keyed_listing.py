"""What a keyed source costs when little changed: a document tree of N small Markdown files (local
disk, and an S3 bucket on moto's server on loopback), loaded once, then a run with nothing changed
(listing only) and a run after 100 files were rewritten. Object bodies read are counted from the S3
server's request log, not from indexops' own counters. Hashing embedder by default: the figures are
about listing and fetching, not encoding.

    python bench/keyed_listing.py                    # 10,000 keys, local and S3
    python bench/keyed_listing.py --keys 500 --changed 20 --where local    # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _doc(i: int, version: int = 1) -> bytes:
    return (f"# Page {i}\n\nThis is page {i} of the handbook, version {version}.\n\n## Details\n\n"
            f"Topic {i % 97} is covered here with a few words about item {i}.\n").encode()


def _start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def measure(where: str, keys: int, changed: int, config: str) -> dict:
    from indexops.index.context import open_index
    from indexops.ingest.driver import ingest_path
    from indexops.settings import load_settings

    root = Path(tempfile.mkdtemp(prefix=f"bench-keyed-{where}-"))
    proc = None
    gets = lambda: 0  # noqa: E731
    if where == "s3":
        log = root / "moto.log"
        proc, url = _start_moto(log)
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_ENDPOINT_URL=url, AWS_DEFAULT_REGION="us-east-1")
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        fs.pipe({f"bench/tree/p{i:05d}.md": _doc(i) for i in range(keys)})
        src = "s3://bench/tree"
        pat = re.compile(r'"GET /bench/tree/[^? ]+ HTTP')
        gets = lambda: len(pat.findall(log.read_text(errors="replace")))  # noqa: E731
        write = lambda i, v: fs.pipe(f"bench/tree/p{i:05d}.md", _doc(i, v))  # noqa: E731
    else:
        tree = root / "tree"
        tree.mkdir()
        for i in range(keys):
            (tree / f"p{i:05d}.md").write_bytes(_doc(i))
        src = str(tree)
        write = lambda i, v: (tree / f"p{i:05d}.md").write_bytes(_doc(i, v))  # noqa: E731
    ctx = open_index(root / "ws", load_settings(config))
    out: dict = {"where": where, "keys": keys}
    try:
        t0 = time.perf_counter()
        ingest_path(ctx, src, "documents", feed="bench")
        out["first_load_s"] = round(time.perf_counter() - t0, 2)
        g0 = gets()
        t0 = time.perf_counter()
        r = ingest_path(ctx, src, "documents", feed="bench")
        out["noop_s"] = round(time.perf_counter() - t0, 3)
        out["noop_bodies_read"] = gets() - g0 if where == "s3" else None
        out["noop_listed"] = r["keys"]["listed"]
        step = max(1, keys // changed)
        for i in range(0, step * changed, step):
            write(i, 2)
        g0 = gets()
        t0 = time.perf_counter()
        r = ingest_path(ctx, src, "documents", feed="bench")
        out[f"changed_{changed}_s"] = round(time.perf_counter() - t0, 3)
        out[f"changed_{changed}_bodies_read"] = gets() - g0 if where == "s3" else None
        out[f"changed_{changed}_chunks_embedded"] = r["counts"]["chunks_embedded"]
    finally:
        ctx.close()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--changed", type=int, default=100)
    ap.add_argument("--where", choices=["local", "s3", "both"], default="both")
    ap.add_argument("--config", default=str(REPO / "configs" / "hashing.yaml"))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "keyed_listing.json")
    a = ap.parse_args()
    res = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "config": a.config,
           "command": f"python bench/keyed_listing.py --keys {a.keys} --changed {a.changed} --where {a.where}",
           "runs": [measure(w, a.keys, a.changed, a.config) for w in (["local", "s3"] if a.where == "both" else [a.where])]}
    text = json.dumps(res, indent=2)
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
