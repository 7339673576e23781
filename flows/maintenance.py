"""Keep the index honest: reconcile the store with the ledger (repairing drift), then optimize the
store and prune the near-duplicate index."""

from __future__ import annotations

from typing import Any

from prefect import flow

from indexops.index.context import open_collection, open_index
from indexops.index.reconcile import raise_if_drifted
from indexops.settings import load_settings
from tasks.maintenance import optimize_store, prune_lsh, publish_reconcile_report, publish_replica, reconcile_index


@flow(name="maintenance", description="Reconcile every point of the index with the ledger, repair drift, optimize the store, prune the near-duplicate index; fail when drift remains.")
def maintenance(
    workspace: str,
    config_path: str | None = None,
    collection: str | None = None,
    repair: bool = True,
    optimize: bool = True,
    prune_dedupe_index: bool = True,
    lock_wait_s: float = 0.0,
) -> dict[str, Any]:
    """Reconcile (and repair) one collection, the configured recipe's by default; returns the report."""
    settings = load_settings(config_path)
    ctx = open_collection(workspace, collection, settings.ledger.url) if collection else open_index(workspace, settings)
    try:
        owner = ctx.ledger.acquire_lock(ctx.collection, wait_s=lock_wait_s)
        try:
            report = reconcile_index(ctx, repair)
            publish_reconcile_report(report)
            raise_if_drifted(report)
            out = report.to_dict()
            if optimize:
                out["optimized"] = optimize_store(ctx)
                if out["optimized"]:  # readers get the merged segments (same content, same snapshot id)
                    out["published"] = publish_replica(ctx)
            if prune_dedupe_index:
                out["lsh_rows_pruned"] = prune_lsh(ctx)
            return out
        finally:
            ctx.ledger.release_lock(ctx.collection, owner)
    finally:
        ctx.close()
