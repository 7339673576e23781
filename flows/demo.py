"""`make demo`: start (or reuse) a local Prefect server and run every flow built so far on the
bundled sample data, one delta at a time, then say where to look."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "indexops" / "sample_data"


def _healthy(api: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def serve_deployments(state_dir: Path, api: str, timeout_s: float = 120.0) -> list[str]:
    """Register the deployments of configs/operations.yaml (which points at this demo's feed and
    workspace), served from a background process with their schedules paused, so the UI's
    Deployments page shows what `make deploy` would set up; returns their names once registered."""
    from prefect.client.orchestration import get_client

    from indexops.operations import deployment_specs, load_operations

    ops_path = REPO / "configs" / "operations.yaml"
    want = {s["name"] for s in deployment_specs(load_operations(ops_path))}
    pid_file = state_dir / "serve.pid"
    if pid_file.exists():  # an earlier demo's: replaced, so it serves this code
        try:
            os.killpg(int(pid_file.read_text()), 15)
        except (ProcessLookupError, ValueError, PermissionError):
            pass
    log = open(state_dir / "serve.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--config", str(ops_path), "--paused"], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "PREFECT_API_URL": api})
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serving the deployments failed; see {state_dir / 'serve.log'}")
        with get_client(sync_client=True) as c:
            have = {d.name for d in c.read_deployments()}
        if want <= have:
            return sorted(want)
        time.sleep(1)
    raise SystemExit(f"the deployments were not registered within {timeout_s:.0f} s; see {state_dir / 'serve.log'}")


def ensure_server(port: int, state_dir: Path) -> str:
    """Reuse a server that answers on the port, else start one detached (it keeps the UI up)."""
    api = os.environ.get("PREFECT_API_URL") or f"http://127.0.0.1:{port}/api"
    if _healthy(api):
        print(f"using the Prefect server at {api}")
        return api
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "prefect-server.log", "ab")
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_URL=f"http://127.0.0.1:{port}",
               PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    (state_dir / "prefect-server.pid").write_text(str(proc.pid))
    print(f"starting a Prefect server on 127.0.0.1:{port} (pid {proc.pid}, log {state_dir / 'prefect-server.log'}) ...")
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the Prefect server exited; see {state_dir / 'prefect-server.log'}")
        if _healthy(api):
            return api
        time.sleep(1)
    raise SystemExit("the Prefect server did not answer within 120 s")


class SimulatedDays:
    """The demo's clock: backdates the ledger's timestamps (snapshots, runs, eval runs) by whole
    days so one demo run leaves a week of history for the drift report's time axis. Only this demo
    uses it; it replaces `utcnow` in the loaded `indexops` modules and restores it on exit."""

    def __init__(self) -> None:
        from indexops.ledger import schema

        self.real = schema.utcnow
        self.days_ago = 0
        self.mods: list[object] = []

    def _patch(self) -> None:  # modules imported since the last call too
        for name, m in list(sys.modules.items()):
            if name.startswith("indexops.") and getattr(m, "utcnow", None) is self.real:
                m.utcnow = self.now
                self.mods.append(m)

    def day(self, days_ago: int) -> "SimulatedDays":
        self.days_ago = days_ago
        self._patch()
        print(f"\n--- simulated day {-days_ago:+d} (ledger timestamps backdated {days_ago} day(s))" if days_ago else "\n--- today")
        return self

    def now(self):
        from datetime import timedelta

        return self.real() - timedelta(days=self.days_ago)

    def __enter__(self) -> "SimulatedDays":
        self._patch()
        return self

    def __exit__(self, *exc: object) -> None:
        for m in self.mods:
            m.utcnow = self.real


def start_alert_receiver(path: Path) -> str:
    """A loopback webhook standing in for on-call: each alert the Prefect server sends is appended
    to `path` as one JSON line. Lives as long as the demo process."""
    import http.server
    import threading

    path.unlink(missing_ok=True)

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with open(path, "ab") as f:
                f.write(body.replace(b"\n", b" ") + b"\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, name="demo-alert-receiver", daemon=True).start()
    return f"http://127.0.0.1:{srv.server_port}/alerts"


def setup_demo_alerts(url: str) -> list[str]:
    """The automations of configs/operations.yaml, every rule routed to `url` (the `--webhook-url`
    quick start), so the UI's Automations page shows them and a failing run below pages."""
    from indexops.operations import load_operations, with_quickstart_webhook
    from tasks.alerts import setup_alerts

    os.environ["INDEXOPS_DEMO_WEBHOOK_URL"] = url
    ops = with_quickstart_webhook(load_operations(REPO / "configs" / "operations.yaml"), "env:INDEXOPS_DEMO_WEBHOOK_URL")
    rep = setup_alerts(ops)
    return sorted(rep.created + rep.updated)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default=".demo", help="where the demo keeps its feed, workspace and server state")
    ap.add_argument("--port", type=int, default=4200)
    ap.add_argument("--embedder", default=None, help="override the model (e.g. 'hashing' for a quick look)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = Path(args.dir).resolve()
    api = ensure_server(args.port, base)
    os.environ["PREFECT_API_URL"] = api
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.ingest import ingest
    from indexops.index.snapshot import diff_snapshots
    from indexops.ledger import Ledger

    feed = base / "feed" / "helpcenter"
    handbook = base / "feed" / "handbook"  # a document tree beside the delta feed (configs/operations.yaml: source_kind documents)
    ws = base / "workspace"
    shutil.rmtree(handbook, ignore_errors=True)
    shutil.copytree(SAMPLE / "handbook", handbook)
    shutil.rmtree(feed, ignore_errors=True)
    shutil.rmtree(ws, ignore_errors=True)
    feed.mkdir(parents=True)
    config = str(REPO / "configs" / "demo.yaml")
    snaps = []
    dups_found = promoted = 0
    clock = SimulatedDays()
    deltas = sorted((SAMPLE / "feed").iterdir())
    days = {f.name: 6 - i for i, f in enumerate(deltas)}  # the sample deltas on days -6, -5, -4
    qlog = base / "query_log.jsonl"  # the sample log plus what users asked this week
    qlog.write_text((SAMPLE / "query_log.jsonl").read_text() + (SAMPLE / "later" / "query_log_extra.jsonl").read_text())
    with temporary_settings({PREFECT_API_URL: api}), clock:
        from indexops.operations import load_operations
        from indexops.settings import load_settings as _load
        from tasks.deployments import prepare_deploy

        # the work pool and the ingest concurrency limit `make deploy` would create, so the UI's
        # Work Pools and Concurrency pages show them and every ingest below holds the slot
        for line in prepare_deploy(load_operations(REPO / "configs" / "operations.yaml"), _load(config).ingest.concurrency_limit):
            print(f"    {line}")
        alerts_log = base / "alerts.jsonl"
        names = setup_demo_alerts(start_alert_receiver(alerts_log))
        print(f"    {len(names)} automations ({'; '.join(names)}); every alert goes to a loopback receiver writing {alerts_log}")
        from flows.evaluate import evaluate
        from flows.nightly_regression import nightly_regression

        queries, qrels = str(SAMPLE / "queries.jsonl"), str(SAMPLE / "qrels" / "test.tsv")

        def evaluate_baseline() -> None:
            print("=== evaluate flow: every retriever on the labeled sample queries (baseline pinned)")
            ev = evaluate(workspace=str(ws), queries=queries, qrels=qrels, config_path=config,
                          retrievers=["bm25", "sparse", "dense", "hybrid"], pin_baseline=True)
            for e in ev["evals"]:
                m = e["metrics"]
                print(f"    {e['retriever']:<7} ndcg@10 {m['ndcg@10']:.3f}  recall@10 {m['recall@10']:.3f}  mrr@10 {m['mrr@10']:.3f}")

        def nightly() -> None:
            print("=== nightly_regression flow: live snapshot against the pinned baseline")
            try:
                nr = nightly_regression(workspace=str(ws), queries=queries, qrels=qrels, config_path=config)
            except Exception as e:  # noqa: BLE001 - the planted regression fails the run, as it would page in production
                print(f"    FAILED (the run is red in the UI): {str(e)[:160]}")
                return
            for name, v in nr["live"].items():
                print(f"    {name}: {v['status']}")

        for f in deltas:
            clock.day(days[f.name])
            shutil.copy(f, feed / f.name)
            print(f"\n=== delta {f.name} arrives -> ingest flow")
            s = ingest(feed_path=str(feed), workspace=str(ws), config_path=config, embedding_model=args.embedder)
            c = s["counts"]
            print(f"    indexed {c['upserted']}, deleted {c['deleted']}, unchanged {c['unchanged']}, stale {c['stale']}, "
                  f"exact dup {c['exact_duplicates']}, near dup {c['near_duplicates']}, promoted {c['promoted']}, "
                  f"quarantined {c['quarantined']}, chunks embedded {c['chunks_embedded']}")
            print(f"    snapshot {s['snapshot']['snapshot_id'][:16]}  ({s['snapshot']['documents']} documents)")
            snaps.append(s["snapshot"]["snapshot_id"])
            dups_found += c["exact_duplicates"] + c["near_duplicates"]
            promoted += c["promoted"]
            if f == deltas[0]:
                evaluate_baseline()
            else:
                nightly()

        # later days: an off-topic batch (HR pages pushed into the help-centre feed), then a CMS
        # migration that deletes help articles labeled queries rely on (a real regression)
        for name, day, what in (("000004-offtopic-hr-pages.jsonl", 3, "an off-topic batch: HR pages in the help-centre feed"),
                                ("000005-migration-deletes.jsonl", 1, "a CMS migration deletes 6 help articles (a real regression)")):
            clock.day(day)
            shutil.copy(SAMPLE / "later" / name, feed / name)
            print(f"=== delta {name} arrives ({what}) -> ingest flow")
            s = ingest(feed_path=str(feed), workspace=str(ws), config_path=config, embedding_model=args.embedder)
            print(f"    indexed {s['counts']['upserted']}, deleted {s['counts']['deleted']}; snapshot {s['snapshot']['snapshot_id'][:16]}")
            snaps.append(s["snapshot"]["snapshot_id"])
            nightly()
            if day == 3:  # the report as it read that day (core call: the flow always reports as of now)
                from indexops.drift.report import build_drift_report, write_drift_report

                rep = build_drift_report(ws, _load(config, {"embedding": {"model": args.embedder}} if args.embedder else None),
                                         now=clock.now(), query_log=str(qlog))
                print(f"    drift report of that day: {rep['verdict']} -> {write_drift_report(rep, base / 'reports')['archived']}")

        clock.day(0)
        show_document_tree(ingest, handbook, ws, config, args.embedder)
        print("=== re-run with nothing new (idempotent)")
        s = ingest(feed_path=str(feed), workspace=str(ws), config_path=config, embedding_model=args.embedder)
        print(f"    chunks embedded {s['counts']['chunks_embedded']}; snapshot {s['snapshot']['snapshot_id'][:16]} (unchanged: {not s['snapshot']['new']})")
        from flows.drift_report import drift_report

        print("=== drift_report flow: retrieval, corpus change, embedding drift and query coverage since the first snapshot")
        dr = drift_report(workspace=str(ws), out_dir=str(base / "reports"), config_path=config, query_log=str(qlog))
        print(f"    {dr['summary']}")
        for sid, v in dr["sections"].items():
            print(f"    {sid}: {v}")
        print(f"    report {dr['html']}\n    history {dr['index']}")
    from indexops import Index
    from indexops.settings import load_settings

    with Index.open(ws, load_settings(config, {"embedding": {"model": args.embedder}} if args.embedder else None)) as index:
        ans = index.search("I forgot my login password", "hybrid", k=3)  # as a RAG app reads it, beside the flows
    print(f"\n=== search 'I forgot my login password' (hybrid) on published snapshot {ans.snapshot_id[:16]}: {[h['doc_id'] for h in ans.hits]}")
    led = Ledger.for_workspace(ws)
    d = diff_snapshots(led, snaps[0], snaps[-1])
    print(f"\n=== snapshot diff first -> last: added {d['added']}, changed {d['changed']}, removed {d['removed']}")
    print("=== quarantine:")
    for q in led.list_quarantine():
        print(f"    {q['file']}:{q['line']}  {q['reason']}")
    print("=== duplicates:")
    dups = led.list_duplicates()
    for r in dups:
        print(f"    {r['doc_id']} is a {r['dup_kind']} duplicate of {r['duplicate_of']}")
    if not dups:  # held-back duplicates are indexed once their original changes or leaves
        print(f"    none held back now ({dups_found} found while ingesting; {promoted} promoted when the document they duplicated changed or left)")
    print("\n=== deployments (configs/operations.yaml), served from a background process, schedules paused:")
    for name in serve_deployments(base, api):
        print(f"    {name}")
    ui = api[: -len("/api")] if api.endswith("/api") else api
    print(f"""
Where to look
  Prefect UI (flow runs, task runs; artifacts: ingest report, evaluation table, nightly regression): {ui}/runs
  Deployments (what a data engineer schedules; run one with "Run" in the UI):                      {ui}/deployments
  Automations (who is paged for what; here a loopback receiver stands in for on-call):             {ui}/automations
  Alerts received so far ({_count_lines(alerts_log)}; one JSON line each):             {alerts_log}
  Document tree feed (edit a page, run the ingest-handbook deployment): {base / 'feed' / 'handbook'}
  Workspace (ledger.db, Qdrant Edge collection):           {ws}
  Published snapshots readers open (any number at once):   {ws / 'replicas'}
  Read it from an app:  from indexops import Index; Index.open("{ws}", "{config}").search("reset password")
  Drift report (open offline in a browser):                {base / 'reports' / 'drift-report.html'}
  Try:  .venv/bin/indexops snapshot show --workspace {ws}
        .venv/bin/indexops quarantine list --workspace {ws}
        .venv/bin/indexops report --workspace {ws} --out {base / 'reports'} --config configs/demo.yaml
  Schedule these flows on this data: make deploy   (deployments from configs/operations.yaml + a worker)
  Page someone when ingest fails:     make alerts WEBHOOK_URL=https://hooks.example.com/...
  The server keeps running for the UI; stop it and the served deployments with:
        kill $(cat {base / 'prefect-server.pid'}); kill -- -$(cat {base / 'serve.pid'})""")


def show_document_tree(ingest, tree: Path, ws: Path, config: str, embedder: str | None) -> None:
    """The handbook (Markdown, HTML, text) as a `documents` source: listed and read once, then only
    the page edited is read again, and a file that is not a document is quarantined with the reason."""

    def run(what: str) -> None:
        s = ingest(feed_path=str(tree), workspace=str(ws), config_path=config, source_kind="documents", embedding_model=embedder)
        k = s["keys"]
        print(f"=== document tree {tree.name}/ ({what}) -> ingest flow, source_kind documents")
        print(f"    listed {k['listed']}, fetched {k['fetched']}, unchanged {k['unchanged']}, deleted {k['deleted']}, "
              f"unreadable {k['unreadable']}; chunks embedded {s['counts']['chunks_embedded']}; snapshot {s['snapshot']['snapshot_id'][:16]}")

    run("first listing: every page read, sections kept as each chunk's section path")
    page = tree / "people" / "leave.md"
    page.write_text(page.read_text().replace("twenty-five days", "twenty-seven days"))
    (tree / "people" / "org-chart.html").write_bytes(bytes(range(256)) * 8)  # a binary export under an .html name
    run("one page edited, one broken file added: only those two are read")


def _count_lines(path: Path) -> int:
    return sum(1 for _ in open(path, "rb")) if path.exists() else 0


if __name__ == "__main__":
    main()
