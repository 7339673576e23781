"""Nightly regression: the live snapshot (and an optional candidate recipe) against a pinned
baseline eval, with paired statistics; fail fails the run (and pages); pass may promote."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote  # large inputs: skip Prefect's walk over them

from indexops.eval.evaluate import RegressionFailed
from indexops.eval.gate import worst
from indexops.index.context import open_index
from indexops.index.promotion import ensure_live, promote, server_alias_switch
from indexops.index.reader import open_live, open_snapshot
from indexops.index.snapshot import current_snapshot_id
from indexops.ingest.stages import new_run_id
from indexops.settings import load_settings
from tasks.evaluate import (
    build_candidate_collection,
    evaluate_retriever,
    gate_against_baseline,
    load_query_set_task,
    publish_gate_report,
)


@flow(name="nightly_regression", description="Gate the live index (and a candidate recipe) against the pinned baseline eval.")
def nightly_regression(
    workspace: str,
    queries: str,
    qrels: str,
    config_path: str | None = None,
    candidate_config_path: str | None = None,
    promote_on_pass: bool = False,
) -> dict[str, Any]:
    """Evaluate, compare with the pinned baseline per retriever, publish the verdict."""
    log = get_run_logger()
    settings = load_settings(config_path)
    live = open_live(workspace, settings)
    run_id = str(flow_run.get_id() or new_run_id())
    result: dict[str, Any] = {"live": {}, "candidate": None, "promoted": None}
    try:
        ensure_live(live.ledger, live.collection)
        qs = load_query_set_task(queries, qrels)
        reports = []
        for r in settings.eval.retrievers:
            cur = evaluate_retriever(quote(live), quote(qs), r, settings.eval.metrics)
            base = live.ledger.pinned_eval(r, qs.hash)
            if base is None:
                live.ledger.pin_eval(cur.eval_id)
                log.info("no baseline for %s on %s: pinned this run (%s)", r, qs.name, cur.eval_id[:12])
                result["live"][r] = {"status": "pass", "summary": "baseline pinned by this run", "eval_id": cur.eval_id}
                continue
            g = gate_against_baseline(quote(live), base["eval_id"], cur.eval_id, quote(qs))
            reports.append(g)
            result["live"][r] = g.to_dict()
        if candidate_config_path:
            builder = open_index(workspace, load_settings(candidate_config_path))
            try:
                result["candidate"] = {"collection": builder.collection}
                if builder.collection != live.collection:  # built (and published) under its own writer lock
                    owner = builder.ledger.acquire_lock(builder.collection, wait_s=0.0)
                    try:
                        build_candidate_collection(builder, run_id)
                    finally:
                        builder.ledger.release_lock(builder.collection, owner)
                cand_sid = current_snapshot_id(builder.ledger, builder.collection)
            finally:
                builder.close()
            cand = open_snapshot(workspace, settings, cand_sid)  # the candidate as readers would be served it
            try:
                cand_reports = []
                for r in settings.eval.retrievers:
                    o = evaluate_retriever(quote(cand), quote(qs), r, settings.eval.metrics)
                    base = live.ledger.pinned_eval(r, qs.hash)
                    g = gate_against_baseline(quote(live), base["eval_id"], o.eval_id, quote(qs))
                    cand_reports.append(g)
                reports += cand_reports
                cstatus = worst([g.status for g in cand_reports])
                result["candidate"].update({"status": cstatus, "reports": [g.to_dict() for g in cand_reports]})
                if promote_on_pass and cstatus == "pass" and cand.collection != live.collection:
                    snap = cand.ledger.latest_snapshot(cand.collection)
                    result["promoted"] = promote(live.ledger, snap["snapshot_id"], reason=f"nightly_regression {run_id}: gate passed",
                                                 switch=server_alias_switch(settings, workspace))
                    log.info("promoted %s to live", cand.collection)
            finally:
                cand.close()
        publish_gate_report(reports, "Nightly regression")
        live_statuses = [v["status"] for v in result["live"].values()]
        result["status"] = worst(live_statuses)
        if result["status"] == "fail":
            failing = "; ".join(f"{g.retriever}: {g.summary}" for g in reports if g.status == "fail")
            raise RegressionFailed(f"nightly regression failed on snapshot {reports[0].candidate_snapshot[:12]}: {failing}")
        return result
    finally:
        live.close()
