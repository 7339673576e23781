"""Commands on an index: reconcile, eval, search, promote, rollback, regression, benchmark, aliases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from indexops.cli.common import ConfigOpt, JsonOpt, WorkspaceOpt, _fail, _ledger, _print_json, _quiet_console_tracebacks, app


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
    from indexops.index.context import open_collection, open_index
    from indexops.index.reconcile import IndexDrift, raise_if_drifted, reconcile as do_reconcile
    from indexops.ledger import LedgerBusy
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
    from indexops.eval.evaluate import evaluate_snapshot, floor_check
    from indexops.eval.queries import load_query_set
    from indexops.eval.retrieval import RETRIEVERS
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
    from indexops.eval.retrieval import RETRIEVERS, search as do_search
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
    from indexops.index.reader import open_snapshot

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
    from indexops.index.promotion import edge_retained, promote as do_promote, server_alias_switch
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
    from indexops.index.promotion import edge_retained, rollback as do_rollback, rollback_to, server_alias_switch
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
    from indexops.eval.beir import dumps, run_beir
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
