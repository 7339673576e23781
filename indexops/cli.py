"""The `indexops` command line. Commands that run pipelines start the Prefect flow (imported
lazily, so `indexops --help` and ledger queries stay fast and Prefect-free)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Keep a RAG retrieval index fresh, versioned and measured.")
quarantine_app = typer.Typer(no_args_is_help=True, help="Records rejected by validation, with reason and position.")
snapshot_app = typer.Typer(no_args_is_help=True, help="Content-addressed snapshots of the index.")
duplicates_app = typer.Typer(no_args_is_help=True, help="Documents dropped as duplicates and what they duplicate.")
runs_app = typer.Typer(no_args_is_help=True, help="Ingest runs recorded in the ledger.")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(duplicates_app, name="duplicates")
app.add_typer(runs_app, name="runs")

WorkspaceOpt = typer.Option(..., "--workspace", "-w", help="Workspace directory (ledger, collections).")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML overlay on configs/default.yaml.")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _fail(msg: str, code: int = 1) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _ledger(workspace: Path, config: Optional[Path]):
    from indexops.ledger import Ledger
    from indexops.settings import load_settings

    if not workspace.exists():
        _fail(f"workspace {workspace} does not exist; run `indexops ingest` first")
    s = load_settings(config)
    return Ledger.for_workspace(workspace, s.ledger.url)


class _NoTraceback(logging.Formatter):
    """Wraps a console formatter so that log records print without their traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _quiet_console_tracebacks() -> None:
    """Prefect logs a failing run's traceback to the console; the CLI prints one paragraph
    instead. The traceback still reaches the Prefect API and UI (only console output changes)."""
    loggers = [logging.getLogger()] + [l for l in logging.root.manager.loggerDict.values() if isinstance(l, logging.Logger)]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stderr, sys.stdout) and not isinstance(h.formatter, _NoTraceback):
                h.setFormatter(_NoTraceback(h.formatter))


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@app.command()
def ingest(
    feed: Path = typer.Option(..., "--feed", "-f", help="Delta feed directory, full-snapshot directory or BEIR folder."),
    workspace: Path = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    source: str = typer.Option("auto", "--source", help="auto | delta | snapshot | beir"),
    feed_name: Optional[str] = typer.Option(None, "--feed-name", help="Name of the feed in the ledger (default: folder name)."),
    embedder: Optional[str] = typer.Option(None, "--embedder", help="'hashing' or a sentence-transformers model name/path."),
    wait: float = typer.Option(0.0, "--wait", help="Seconds to wait for another ingest of the same index."),
    as_json: bool = JsonOpt,
) -> None:
    """Apply the feed's pending changes and print the new snapshot id."""
    if source not in ("auto", "delta", "snapshot", "beir"):
        _fail(f"--source must be auto, delta, snapshot or beir, not {source!r}", 2)
    if not feed.exists():
        _fail(f"feed path {feed} does not exist", 2)
    if config is not None and not config.exists():
        _fail(f"config file {config} does not exist", 2)
    _encode_ahead(feed, workspace, config, source, feed_name, embedder)
    from flows.ingest import run_ingest

    _quiet_console_tracebacks()

    try:
        summary = run_ingest(
            feed_path=str(feed), workspace=str(workspace), config_path=str(config) if config else None,
            source_kind=source, feed_name=feed_name, embedding_model=embedder, lock_wait_s=wait,
        )
    except Exception as e:  # noqa: BLE001 - one clear paragraph, never a traceback
        _fail(str(e) if type(e).__name__ == "IngestFailed" else f"ingest of {feed} failed: {type(e).__name__}: {e}")
        return
    if as_json:
        _print_json(summary)
        return
    c = summary["counts"]
    s = summary["snapshot"]
    typer.echo(f"feed {summary['feed']}: applied {len(summary.get('files', []))} file(s)")
    typer.echo(
        "  received {received}, indexed {upserted}, deleted {deleted}, unchanged {unchanged}, stale {stale}, "
        "exact dup {exact_duplicates}, near dup {near_duplicates}, promoted {promoted}, quarantined {quarantined}, "
        "chunks embedded {chunks_embedded}".format(**c)
    )
    for f in summary.get("changed_after_apply", []):
        typer.secho(f"  warning: {f} changed after it was applied; not re-applied", fg=typer.colors.YELLOW)
    typer.echo(f"snapshot {s['snapshot_id']}  ({s['documents']} documents, {s['chunks']} chunks){'' if s.get('new') else '  unchanged'}")


def _encode_ahead(feed: Path, workspace: Path, config: Optional[Path], source: str, feed_name: Optional[str],
                  embedder: Optional[str]) -> None:
    """A small delta's texts start encoding on a thread before Prefect is imported and the flow run
    created (`encode_ahead_of_run`); the run takes the vectors. Any error is left to the run, which
    meets it again and reports it in full."""
    try:
        from indexops.ingest import encode_ahead_of_run, run_settings

        settings, kind = run_settings(config, feed, source, embedder)
        encode_ahead_of_run(workspace, settings, feed, kind, feed_name)
    except Exception:  # noqa: BLE001
        pass


@quarantine_app.command("list")
def quarantine_list(
    workspace: Path = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    feed: Optional[str] = typer.Option(None, "--feed", help="Only this feed."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many rows."),
    as_json: bool = JsonOpt,
) -> None:
    """List quarantined records: feed, file, line, id and reason."""
    rows = _ledger(workspace, config).list_quarantine(feed, limit)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no quarantined records")
    for r in rows:
        typer.echo(f"{r['feed']}/{r['file']}:{r['line']}  id={r['record_id']!s:<12}  {r['reason']}")


def _manifest_view(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("snapshot_id", "parent", "collection", "documents", "duplicates", "deleted", "chunks", "recipe", "cursors", "created_at", "run_id", "ledger_version")
    return {k: m.get(k) for k in keys}


@snapshot_app.command("show")
def snapshot_show(
    snapshot: Optional[str] = typer.Argument(None, help="Snapshot id or prefix (default: the latest)."),
    workspace: Path = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show a snapshot's manifest: id, counts, recipe, parent, feed cursors."""
    led = _ledger(workspace, config)
    m = led.get_snapshot(snapshot) if snapshot else led.latest_snapshot()
    if m is None:
        _fail("no snapshot yet; run `indexops ingest` first" if not snapshot else f"unknown snapshot {snapshot!r}")
    view = _manifest_view(m)
    if as_json:
        _print_json(view)
        return
    typer.echo(f"snapshot   {view['snapshot_id']}")
    typer.echo(f"parent     {view['parent']}")
    typer.echo(f"collection {view['collection']}")
    typer.echo(f"documents  {view['documents']}  chunks {view['chunks']}  duplicates {view['duplicates']}  deleted {view['deleted']}")
    emb = view["recipe"]["embedding"]
    ch = view["recipe"]["chunker"]
    typer.echo(f"recipe     {emb['model']} ({emb['fingerprint'][:12]}), {ch['strategy']} {ch['max_tokens']}/{ch['overlap_tokens']} tokens")
    for feed, cur in (view["cursors"] or {}).items():
        typer.echo(f"cursor     {feed}: {cur['last_file']}")


@snapshot_app.command("list")
def snapshot_list(workspace: Path = WorkspaceOpt, config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt,
                  retained_only: bool = typer.Option(False, "--retained", help="Only snapshots whose published replica is kept (readable, pinnable).")) -> None:
    """List snapshots, oldest first; `R` marks those readers can still pin or roll back to."""
    from indexops import replicas

    rows = [_manifest_view(m) for m in _ledger(workspace, config).list_snapshots()]
    kept = {(r.collection, r.snapshot_id) for root in (workspace / replicas.REPLICAS).glob("*") for r in replicas.list_replicas(root)}
    for r in rows:
        r["retained"] = (r["collection"], r["snapshot_id"]) in kept
    if retained_only:
        rows = [r for r in rows if r["retained"]]
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['created_at']}  {r['snapshot_id'][:16]} {'R' if r['retained'] else ' '} docs {r['documents']:>7}  "
                   f"chunks {r['chunks']:>8}  parent {str(r['parent'])[:16]}")


@snapshot_app.command("diff")
def snapshot_diff(
    a: str = typer.Argument(..., help="From snapshot (id or prefix)."),
    b: str = typer.Argument(..., help="To snapshot (id or prefix)."),
    workspace: Path = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Documents added, changed and removed between two snapshots."""
    from indexops.snapshot import diff_snapshots

    try:
        d = diff_snapshots(_ledger(workspace, config), a, b)
    except (LookupError, ValueError) as e:
        _fail(str(e))
        return
    if as_json:
        _print_json(d)
        return
    typer.echo(f"{d['from'][:16]} -> {d['to'][:16]}: +{d['counts']['added']} added, ~{d['counts']['changed']} changed, -{d['counts']['removed']} removed")
    for k, sign in (("added", "+"), ("changed", "~"), ("removed", "-")):
        for doc in d[k][:50]:
            typer.echo(f"  {sign} {doc}")


@duplicates_app.command("list")
def duplicates_list(workspace: Path = WorkspaceOpt, config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Documents kept out of the index as duplicates, with the id they duplicate."""
    rows = _ledger(workspace, config).list_duplicates()
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['doc_id']}  {r['dup_kind']} duplicate of {r['duplicate_of']}  (similarity {r['similarity']:.2f})")


@runs_app.command("list")
def runs_list(workspace: Path = WorkspaceOpt, config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Ingest runs with status, counts and snapshot."""
    rows = _ledger(workspace, config).list_runs()
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['started_at']}  {r['status']:<9}  {r['feed']}  snapshot {str(r['snapshot_id'])[:12]}  {r['error'] or ''}")


@app.command()
def reconcile(
    workspace: Path = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    repair: bool = typer.Option(False, "--repair", help="Delete points the ledger does not know; re-create missing or altered ones from the ledger's text."),
    collection: Optional[str] = typer.Option(None, "--collection", help="Another collection of the workspace (default: the configured recipe's)."),
    wait: float = typer.Option(0.0, "--wait", help="Seconds to wait for a running ingest of the same index."),
    as_json: bool = JsonOpt,
) -> None:
    """Check every point of the index against the ledger (ids and chunk hashes); exit 1 while drift remains."""
    from indexops.ledger import LedgerBusy
    from indexops.pipeline import open_collection, open_index
    from indexops.reconcile import IndexDrift, raise_if_drifted, reconcile as do_reconcile
    from indexops.settings import load_settings

    if not workspace.exists():
        _fail(f"workspace {workspace} does not exist; run `indexops ingest` first")
    if config is not None and not config.exists():
        _fail(f"config file {config} does not exist", 2)
    s = load_settings(config)
    try:
        ctx = open_collection(workspace, collection, s.ledger.url) if collection else open_index(workspace, s)
    except (LookupError, RuntimeError) as e:
        _fail(str(e))
        return
    try:
        report = do_reconcile(ctx, repair, lock_wait_s=wait)
    except LedgerBusy as e:
        _fail(str(e))
        return
    finally:
        ctx.close()
    if as_json:
        _print_json(report.to_dict())
        if not report.ok:
            raise typer.Exit(1)
        return
    typer.echo(report.summary())
    left = report.remaining or report.found
    for kind, ids in (("missing", left.missing_in_store), ("extra", left.extra_in_store), ("hash mismatch", left.hash_mismatch)):
        for pid in ids[:10]:
            typer.echo(f"  {kind:<13} {pid}")
    try:
        raise_if_drifted(report)
    except IndexDrift as e:
        _fail(str(e))


@app.command("eval")
def eval_cmd(
    workspace: Path = WorkspaceOpt,
    queries: Path = typer.Option(..., "--queries", help="BEIR queries.jsonl (or TREC topics TSV)."),
    qrels: Path = typer.Option(..., "--qrels", help="BEIR qrels TSV or TREC qrels."),
    config: Optional[Path] = ConfigOpt,
    retriever: Optional[list[str]] = typer.Option(None, "--retriever", "-r", help="bm25 | sparse | dense | hybrid (repeatable)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results (with per-query values) here."),
    pin: bool = typer.Option(False, "--pin-baseline", help="Pin these runs as the regression baseline."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", help="Evaluate this retained snapshot (id or prefix) instead of the live one."),
) -> None:
    """Evaluate the live snapshot (or a retained one) on labeled queries and store the run."""
    from indexops.evaluation import evaluate_snapshot, floor_check
    from indexops.queries import load_query_set
    from indexops.retrieval import RETRIEVERS
    from indexops.settings import load_settings

    for r in retriever or []:
        if r not in RETRIEVERS:
            _fail(f"unknown retriever {r!r}; choose from {', '.join(RETRIEVERS)}", 2)
    if not workspace.exists():
        _fail(f"workspace {workspace} does not exist; run `indexops ingest` first")
    try:
        qs = load_query_set(queries, qrels)
    except (OSError, ValueError) as e:
        _fail(str(e), 2)
        return
    s = load_settings(config)
    ctx = _open_reader(workspace, s, snapshot)
    try:
        outs = [evaluate_snapshot(ctx, qs, r, s.eval.metrics) for r in (retriever or s.eval.retrievers)]
        if pin:
            for o in outs:
                ctx.ledger.pin_eval(o.eval_id)
    finally:
        ctx.close()
    for o in outs:
        typer.echo(f"{o.retriever:<7} " + "  ".join(f"{k} {v:.4f}" for k, v in o.metrics.items()) + f"  ({o.seconds:.1f} s, {o.queries} queries)")
    typer.echo(f"snapshot {outs[0].snapshot_id}  query set {qs.name} ({qs.hash[:12]})  evals {' '.join(o.eval_id[:12] for o in outs)}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([o.to_dict(with_queries=True) for o in outs], indent=2, default=str))
    problems = [m for o in outs if (m := floor_check(o, s.eval.floor_metric, s.eval.floor))]
    if problems:
        _fail("; ".join(problems))


@app.command()
def search(
    text: str = typer.Argument(..., help="The query."),
    workspace: Path = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    retriever: Optional[str] = typer.Option(None, "--retriever", "-r", help="bm25 | sparse | dense | hybrid (default from config)."),
    k: int = typer.Option(5, "--k", min=1, help="Documents to return."),
    as_json: bool = JsonOpt,
    snapshot: Optional[str] = typer.Option(None, "--snapshot", help="Search this retained snapshot (id or prefix) instead of the live one."),
) -> None:
    """Search the live index as a RAG app would; the answer names its snapshot and recipe."""
    from indexops.retrieval import RETRIEVERS, search as do_search
    from indexops.settings import load_settings

    if retriever and retriever not in RETRIEVERS:
        _fail(f"unknown retriever {retriever!r}; choose from {', '.join(RETRIEVERS)}", 2)
    if not workspace.exists():
        _fail(f"workspace {workspace} does not exist; run `indexops ingest` first")
    ctx = _open_reader(workspace, load_settings(config), snapshot)
    try:
        ans = do_search(ctx, text, retriever, k)
    finally:
        ctx.close()
    if as_json:
        _print_json(ans.to_dict())
        return
    typer.echo(f"{ans.retriever} on snapshot {ans.snapshot_id[:16]} ({ans.collection}), {ans.took_ms:.0f} ms")
    for i, h in enumerate(ans.hits, start=1):
        snippet = (h.get("text") or "")[:90].replace("\n", " ")
        typer.echo(f"{i:>2}. {h['doc_id']:<14} {h['score']:.4f}  {snippet}")


def _open_reader(workspace: Path, settings: Any, snapshot: Optional[str]):
    """A reader on the live snapshot or a pinned one; a clear exit when that cannot be had."""
    from indexops.reader import open_snapshot

    try:
        return open_snapshot(workspace, settings, snapshot)
    except (LookupError, ValueError) as e:
        _fail(str(e))


@app.command()
def promote(
    snapshot: str = typer.Argument(..., help="Snapshot id or prefix whose collection becomes live."),
    workspace: Path = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    reason: Optional[str] = typer.Option(None, "--reason"),
) -> None:
    """Point the live alias at the collection holding SNAPSHOT."""
    from indexops.promotion import edge_retained, promote as do_promote, server_alias_switch
    from indexops.settings import load_settings

    s = load_settings(config)
    try:
        a = do_promote(_ledger(workspace, config), snapshot, reason, server_alias_switch(s, workspace), edge_retained(s, workspace))
    except (LookupError, ValueError) as e:
        _fail(str(e))
        return
    typer.echo(f"live -> {a['collection']} (snapshot {a['snapshot_id'][:16]}{', pinned' if a.get('pinned') else ''})")


@app.command()
def rollback(workspace: Path = WorkspaceOpt, config: Optional[Path] = ConfigOpt, reason: Optional[str] = typer.Option(None, "--reason"),
             to: Optional[str] = typer.Option(None, "--to", help="Serve exactly this retained snapshot (id or prefix), pinned until the next promote.")) -> None:
    """Point the live alias back at the collection it served before, or (--to) at one retained snapshot's content."""
    from indexops.promotion import edge_retained, rollback as do_rollback, rollback_to, server_alias_switch
    from indexops.settings import load_settings

    s = load_settings(config)
    try:
        if to:
            a = rollback_to(_ledger(workspace, config), to, reason, server_alias_switch(s, workspace), edge_retained(s, workspace))
        else:
            a = do_rollback(_ledger(workspace, config), reason, server_alias_switch(s, workspace))
    except (LookupError, ValueError) as e:
        _fail(str(e))
        return
    typer.echo(f"live -> {a['collection']} (snapshot {a['snapshot_id'][:16]}{', pinned' if a.get('pinned') else ''})")


@app.command()
def regression(
    workspace: Path = WorkspaceOpt,
    queries: Path = typer.Option(..., "--queries"),
    qrels: Path = typer.Option(..., "--qrels"),
    config: Optional[Path] = ConfigOpt,
    candidate: Optional[Path] = typer.Option(None, "--candidate-config", help="A recipe to build from the ledger and gate."),
    promote_on_pass: bool = typer.Option(False, "--promote-on-pass"),
    as_json: bool = JsonOpt,
) -> None:
    """Run the nightly regression flow now: live (and a candidate) against the pinned baseline."""
    from flows.nightly_regression import nightly_regression

    _quiet_console_tracebacks()
    try:
        r = nightly_regression(workspace=str(workspace), queries=str(queries), qrels=str(qrels), config_path=str(config) if config else None,
                               candidate_config_path=str(candidate) if candidate else None, promote_on_pass=promote_on_pass)
    except Exception as e:  # noqa: BLE001
        _fail(f"{type(e).__name__}: {e}")
        return
    if as_json:
        _print_json(r)
        return
    for name, v in r["live"].items():
        typer.echo(f"live {name}: {v['status']} — {v['summary']}")
    if r.get("candidate"):
        typer.echo(f"candidate {r['candidate']['collection']}: {r['candidate'].get('status')}")
    if r.get("promoted"):
        typer.echo(f"promoted: live -> {r['promoted']['collection']}")


benchmark_app = typer.Typer(no_args_is_help=True, help="Standard benchmarks.")
app.add_typer(benchmark_app, name="benchmark")


@benchmark_app.command("beir")
def benchmark_beir(
    folder: Path = typer.Argument(..., help="A BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)."),
    split: str = typer.Option("test", "--split"),
    k: str = typer.Option("10,100", "--k", help="Comma-separated cut-offs."),
    json_out: Path = typer.Option(..., "--json", help="Where to write the results."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Write TREC run files <retriever>.trec here."),
    config: Optional[Path] = ConfigOpt,
    retriever: Optional[list[str]] = typer.Option(None, "--retriever", "-r"),
) -> None:
    """Ingest a BEIR corpus into a fresh workspace and evaluate every retriever on a split."""
    from indexops.beir_benchmark import dumps, run_beir
    from indexops.settings import load_settings

    if not (folder / "corpus.jsonl").is_file():
        _fail(f"{folder} has no corpus.jsonl (BEIR layout expected)", 2)
    if not (folder / "qrels" / f"{split}.tsv").is_file():
        _fail(f"{folder}/qrels/{split}.tsv not found", 2)
    try:
        ks = [int(x) for x in k.split(",") if x.strip()]
    except ValueError:
        _fail(f"--k must be comma-separated integers, not {k!r}", 2)
        return
    res = run_beir(folder, split, load_settings(config), ks=ks, retrievers=retriever, run_dir=run_dir)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(dumps(res))
    for name, m in res["retrievers"].items():
        typer.echo(f"{name:<7} ndcg@10 {m['ndcg@10']:.4f}  recall@10 {m['recall@10']:.4f}  recall@100 {m['recall@100']:.4f}  mrr@10 {m['mrr@10']:.4f}  ({m['seconds']:.1f} s)")
    typer.echo(f"ingest {res['timings_s']['ingest']:.1f} s; snapshot {res['snapshot_id'][:16]}; written {json_out}")


@app.command("aliases")
def aliases_cmd(workspace: Path = WorkspaceOpt, config: Optional[Path] = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Which collection and snapshot the live alias served, and when."""
    led = _ledger(workspace, config)
    hist = led.alias_history("live")
    if as_json:
        _print_json({"live": led.alias("live"), "history": hist})
        return
    for h in hist:
        typer.echo(f"{h['at']}  {h['action']:<8}  {h['collection']}  snapshot {str(h['snapshot_id'])[:16]}  {h['reason'] or ''}")

deployments_app = typer.Typer(no_args_is_help=True, help="Prefect deployments rendered from configs/operations.yaml.")
alerts_app = typer.Typer(no_args_is_help=True, help="Failure and staleness alerts as Prefect automations.")
app.add_typer(deployments_app, name="deployments")
app.add_typer(alerts_app, name="alerts")
OpsOpt = typer.Option(Path("configs/operations.yaml"), "--config", "-c", help="Operations config (schedules, feeds, alerts).")


def _operations(path: Path):
    from pydantic import ValidationError

    from indexops.operations import load_operations

    try:
        return load_operations(path)
    except FileNotFoundError as e:
        _fail(str(e), 2)
    except ValidationError as e:
        _fail(f"{path} is invalid:\n{e}", 2)


@deployments_app.command("render")
def deployments_render(
    config: Path = OpsOpt,
    out: Path = typer.Option(Path("deployments/prefect.yaml"), "--out", "-o"),
    check: bool = typer.Option(False, "--check", help="Exit 1 if OUT differs from what the config renders."),
) -> None:
    """Write the prefect.yaml that `prefect deploy --all` reads."""
    from indexops.operations import render_prefect_yaml

    text = render_prefect_yaml(_operations(config), source=str(config))
    if check:
        if not out.exists() or out.read_text() != text:
            _fail(f"{out} is out of date with {config}; run `indexops deployments render`")
        typer.echo(f"{out} matches {config}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    typer.echo(f"wrote {out}")


@deployments_app.command("prepare")
def deployments_prepare(config: Path = OpsOpt, settings_config: Optional[Path] = typer.Option(None, "--settings", help="indexops settings overlay (for the ingest concurrency limit name).")) -> None:
    """Create the work pool and the ingest concurrency limit on the Prefect server (idempotent)."""
    from indexops.settings import load_settings
    from tasks.deployments import prepare_deploy

    ops = _operations(config)
    for line in prepare_deploy(ops, load_settings(settings_config).ingest.concurrency_limit):
        typer.echo(line)


@alerts_app.command("setup")
def alerts_setup(
    config: Path = OpsOpt,
    webhook_url: Optional[str] = typer.Option(None, "--webhook-url", help="Quick start: send every alert to this webhook (a URL, env:VAR or secret:block)."),
) -> None:
    """Create or update notification blocks and automations; re-running never duplicates."""
    import os

    from indexops.operations import with_quickstart_webhook

    ops = _operations(config)
    if webhook_url:
        ref = webhook_url
        if not webhook_url.startswith(("env:", "secret:")):
            os.environ["INDEXOPS_QUICKSTART_WEBHOOK_URL"] = webhook_url  # keeps the URL out of every object but the block
            ref = "env:INDEXOPS_QUICKSTART_WEBHOOK_URL"
        ops = with_quickstart_webhook(ops, ref)
    from tasks.alerts import AlertsSetupError, setup_alerts

    try:
        rep = setup_alerts(ops)
    except (AlertsSetupError, ValueError) as e:
        _fail(str(e), 2)
        return
    for name, kind in rep.blocks.items():
        typer.echo(f"block       {name} ({kind})")
    for name in rep.removed_blocks:
        typer.echo(f"block       {name}: removed (no longer in the config)")
    for verb, names in (("created", rep.created), ("updated", rep.updated), ("removed", rep.removed)):
        for n in names:
            typer.echo(f"automation  {n}: {verb}")



@app.command("report")
def report_cmd(
    workspace: Path = WorkspaceOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Directory for drift-report.html and drift-report.json."),
    since: Optional[str] = typer.Option(None, "--since", help="ISO date: baseline = last snapshot before it; eval runs and queries from it on."),
    config: Optional[Path] = ConfigOpt,
    redact: Optional[bool] = typer.Option(None, "--redact/--no-redact", help="Replace e-mails, phones, IBAN/card numbers, IPs (default: drift.redact)."),
    query_log: Optional[Path] = typer.Option(None, "--query-log", help="JSONL of production queries (default: drift.query_log)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write the drift report (retrieval, corpus, embedding, coverage) and print the verdicts."""
    from indexops.report.drift_report import WorkspaceNotFound, build_drift_report, headline, parse_since, write_drift_report
    from indexops.settings import load_settings

    if not workspace.exists():
        _fail(f"workspace {workspace} does not exist; run `indexops ingest` first")
    if config is not None and not config.exists():
        _fail(f"config file {config} does not exist", 2)
    if query_log is not None and not query_log.is_file():
        _fail(f"query log {query_log} does not exist", 2)
    try:
        parse_since(since)
    except ValueError as e:
        _fail(str(e), 2)
    try:
        rep = build_drift_report(workspace, load_settings(config), since=since, redact=redact, query_log=query_log)
        paths = write_drift_report(rep, out)
    except WorkspaceNotFound as e:
        _fail(str(e))
        return
    except Exception as e:  # noqa: BLE001 - one clear paragraph, never a traceback
        _fail(f"drift report for {workspace} failed: {type(e).__name__}: {e}")
        return
    if as_json:
        _print_json({"html": str(paths["html"]), "json": str(paths["json"]), "verdict": rep["verdict"],
                     "sections": {s["id"]: s["verdict"] for s in rep["sections"]}})
        return
    typer.echo(f"drift report: {rep['verdict'].upper()}")
    for title, verdict, reason in headline(rep):
        typer.echo(f"  {verdict:<5}  {title}: {reason[:160]}")
    typer.echo(f"html {paths['html']}")
    typer.echo(f"json {paths['json']}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        _exit_now(130)
    except SystemExit as e:
        _exit_now(e.code)


def _exit_now(code: int | str | None) -> None:
    """Exit as the interpreter would, minus tearing down every module: after a flow run that
    teardown (Prefect, pydantic, SQLAlchemy) costs 0.3-0.4 s of a 3-s command. The interpreter's
    own first steps run here: `threading._shutdown()` (it stops idle `concurrent.futures` workers —
    OpenVINO leaves one — then joins the non-daemon threads; joining them alone waited forever on
    such a worker), then the exit handlers (Prefect drains its log and event queues there); the
    ledger and the store were closed by the command itself."""
    import atexit
    import os
    import threading

    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    main()
