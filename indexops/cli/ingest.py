"""`indexops ingest` and what the ledger recorded: quarantine, snapshots, duplicates, runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from indexops.cli.common import (
    ConfigOpt,
    JsonOpt,
    WorkspaceOpt,
    _fail,
    _ledger,
    _print_json,
    _quiet_console_tracebacks,
    app,
    duplicates_app,
    quarantine_app,
    runs_app,
    snapshot_app,
)


SOURCES = ("auto", "delta", "snapshot", "beir", "documents", "sql")


@app.command()
def ingest(
    feed: str = typer.Option(..., "--feed", "-f", help="Where the source is: a folder or any fsspec URL (s3://bucket/prefix, gs://, az://, "
                             "file://) for delta feeds and document trees; a SQLAlchemy URL for --source sql (password from the "
                             "environment: sql.password_env, or PGPASSWORD / ~/.pgpass for PostgreSQL)."),
    workspace: Path = WorkspaceOpt,
    config: Optional[Path] = ConfigOpt,
    source: str = typer.Option("auto", "--source", help="auto | delta | snapshot | beir | documents | sql"),
    feed_name: Optional[str] = typer.Option(None, "--feed-name", help="Name of the feed in the ledger (default: folder name, or the table)."),
    embedder: Optional[str] = typer.Option(None, "--embedder", help="'hashing' or a sentence-transformers model name/path."),
    wait: float = typer.Option(0.0, "--wait", help="Seconds to wait for another ingest of the same index."),
    as_json: bool = JsonOpt,
) -> None:
    """Apply the source's changes and print the new snapshot id."""
    from indexops.ingest.storage import has_password, is_remote, is_sql_url, local_path
    from indexops.settings import mask_url_password

    shown = mask_url_password(feed)
    if source not in SOURCES:
        _fail(f"--source must be one of {', '.join(SOURCES)}, not {source!r}", 2)
    if has_password(feed):
        _fail(f"--feed {shown} holds a password, which Prefect would keep with the run's parameters: set it in the "
              "environment instead (sql.password_env names the variable; PGPASSWORD or ~/.pgpass for PostgreSQL)", 2)
    if not (is_remote(feed) or is_sql_url(feed)) and not local_path(feed).exists():
        _fail(f"feed path {feed} does not exist", 2)
    if config is not None and not config.exists():
        _fail(f"config file {config} does not exist", 2)
    from flows.ingest import run_ingest

    _quiet_console_tracebacks()

    try:
        summary = run_ingest(
            feed_path=feed, workspace=str(workspace), config_path=str(config) if config else None,
            source_kind=source, feed_name=feed_name, embedding_model=embedder, lock_wait_s=wait,
        )
    except Exception as e:  # noqa: BLE001 - one clear paragraph, never a traceback
        _fail(str(e) if type(e).__name__ == "IngestFailed" else f"ingest of {shown} failed: {type(e).__name__}: {e}")
        return
    if as_json:
        _print_json(summary)
        return
    c = summary["counts"]
    s = summary["snapshot"]
    keys = summary.get("keys")
    if keys:
        typer.echo(f"source {summary['feed']} ({summary['source_kind']}): listed {keys['listed']}, fetched {keys['fetched']}, "
                   f"unchanged {keys['unchanged']}, deleted {keys['deleted']}, unreadable {keys['unreadable']}")
    else:
        typer.echo(f"feed {summary['feed']}: applied {len(summary.get('files', []))} file(s)")
    typer.echo(
        "  received {received}, indexed {upserted}, deleted {deleted}, unchanged {unchanged}, stale {stale}, "
        "exact dup {exact_duplicates}, near dup {near_duplicates}, promoted {promoted}, quarantined {quarantined}, "
        "chunks embedded {chunks_embedded}".format(**c)
    )
    for f in summary.get("changed_after_apply", []):
        typer.secho(f"  warning: {f} changed after it was applied; not re-applied", fg=typer.colors.YELLOW)
    typer.echo(f"snapshot {s['snapshot_id']}  ({s['documents']} documents, {s['chunks']} chunks){'' if s.get('new') else '  unchanged'}")


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
    from indexops.index import replicas

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
    from indexops.index.snapshot import diff_snapshots

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
