"""The drift report's corpus section: documents added, updated and deleted per snapshot, duplicate
and quarantine rates, the chunk-length and vocabulary tests against the baseline, freshness per
feed and document ages. Everything comes from the ledger's query methods."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from indexops.drift import statistics as D
from indexops.drift.sections import _r, _section, _snap_ref, _ts

if TYPE_CHECKING:
    from indexops.drift.report import _Collector


def corpus_section(col: _Collector, snaps: list[dict[str, Any]], base: dict[str, Any] | None, live: dict[str, Any] | None,
                   base_why: str) -> dict[str, Any]:
    """The corpus section from the live snapshot back to the baseline (`col` holds the ledger,
    the drift settings, the sampler and the redactor)."""
    if base is None or live is None:
        return _section("corpus", [D.not_applicable("snapshots", "no snapshot yet: run an ingest first")], [])
    d = col.d
    checks: list[D.DriftTest] = []
    compares = [{"label": "snapshots", "baseline": _snap_ref(base), "current": _snap_ref(live), "why": base_why}]
    runs = {r["run_id"]: r for r in col.ledger.list_runs()}
    quarantine = col.ledger.list_quarantine()
    q_by_run: dict[str, int] = {}
    for q in quarantine:
        q_by_run[q["run_id"] or ""] = q_by_run.get(q["run_id"] or "", 0) + 1
    dup_by_run = col.ledger.duplicates_per_run()
    # per-snapshot changes (the live collection's history)
    hist = [s for s in snaps if s["collection"] == live["collection"]][-60:]
    per_run, prev_v = [], None
    first_idx = snaps.index(hist[0]) if hist else 0
    prior = [s for s in snaps[:first_idx] if s["collection"] == live["collection"]]
    if prior:
        prev_v = col.ledger.doc_versions_at(int(prior[-1].get("ledger_version", 0)))
    for s in hist:
        cur_v = col.ledger.doc_versions_at(int(s.get("ledger_version", 0)))
        pv = prev_v or {}
        run = runs.get(s.get("run_id") or "")
        counts = (run or {}).get("counts") or {}
        added = sum(1 for k in cur_v if k not in pv)
        updated = sum(1 for k in cur_v if k in pv and pv[k] != cur_v[k])
        deleted = sum(1 for k in pv if k not in cur_v)
        dups = counts.get("exact_duplicates", 0) + counts.get("near_duplicates", 0) if run else dup_by_run.get(s.get("run_id") or "", 0)
        quar = counts.get("quarantined", 0) if run else q_by_run.get(s.get("run_id") or "", 0)
        received = counts.get("received") if run else None
        if not received:
            received = added + updated + deleted + dups + quar
        per_run.append({"snapshot_id": s["snapshot_id"], "created_at": s["created_at"], "run_id": s.get("run_id"),
                        "feed": (run or {}).get("feed"), "added": added, "updated": updated, "deleted": deleted, "received": received,
                        "exact_duplicates": counts.get("exact_duplicates") if run else None,
                        "near_duplicates": counts.get("near_duplicates") if run else None, "duplicates": dups, "quarantined": quar,
                        "duplicate_rate": _r(dups / received) if received else None,
                        "quarantine_rate": _r(quar / received) if received else None, "counts_from": "run" if run else "ledger"})
        prev_v = cur_v
    base_t = _ts(base["created_at"]) or col.now
    window = [r for r in per_run if (_ts(r["created_at"]) or col.now) > base_t] or per_run[-1:]
    rec = sum(r["received"] for r in window)
    dups = sum(r["duplicates"] for r in window)
    quar = sum(r["quarantined"] for r in window)
    if rec:
        qr, dr = quar / rec, dups / rec
        checks.append(D.DriftTest("quarantine rate", qr, None, D.threshold_verdict(qr, d.quarantine_warn, d.quarantine_alert),
                                  f"{quar} of {rec} received records quarantined ({qr:.1%}) in {len(window)} run(s)", 0, rec,
                                  {"warn": d.quarantine_warn, "alert": d.quarantine_alert}))
        checks.append(D.DriftTest("duplicate rate", dr, None, D.threshold_verdict(dr, d.duplicate_warn, d.duplicate_alert),
                                  f"{dups} of {rec} received records were exact or near duplicates ({dr:.1%})", 0, rec,
                                  {"warn": d.duplicate_warn, "alert": d.duplicate_alert}))
    base_v = col.ledger.doc_versions_at(int(base.get("ledger_version", 0)))
    live_v = col.ledger.doc_versions_at(int(live.get("ledger_version", 0)))
    added = sorted(k for k in live_v if k not in base_v)
    removed = sorted(k for k in base_v if k not in live_v)
    changed = sorted(k for k in live_v if k in base_v and base_v[k] != live_v[k])
    unchanged = sorted(k for k in live_v if k in base_v and base_v[k] == live_v[k])
    if base_v:
        ds = len(removed) / len(base_v)
        checks.append(D.DriftTest("deleted since baseline", ds, None, D.threshold_verdict(ds, d.deleted_warn, d.deleted_alert),
                                  f"{len(removed)} of the baseline's {len(base_v)} documents deleted ({ds:.1%})", len(base_v), len(live_v),
                                  {"warn": d.deleted_warn, "alert": d.deleted_alert}))
    current = col.ledger.current_version_hashes()
    new_ids = [k for k in added + changed if k in current and current[k] == live_v[k]]
    old_ids = [k for k in unchanged if k in current and current[k] == live_v[k]]
    new_s, old_s = col.sample(new_ids, d.max_sample, 1), col.sample(old_ids, d.max_sample, 2)
    # chunk lengths: baseline chunks of unchanged documents vs the new documents' chunks; after a
    # recipe change every live chunk is new (the chunker may have changed)
    same_recipe = base["collection"] == live["collection"]
    new_len_ids = new_s if same_recipe else col.sample(list(live_v), d.max_sample, 3)
    bc = col.ledger.chunks_for_docs(base["collection"], old_s)
    nc = col.ledger.chunks_for_docs(live["collection"], new_len_ids)
    la = [(doc, r.n_chars) for doc, rows in bc.items() for r in rows]
    lb = [(doc, r.n_chars) for doc, rows in nc.items() for r in rows]
    lt = D.length_shift_test([x for _, x in la], [x for _, x in lb], groups_a=[g for g, _ in la], groups_b=[g for g, _ in lb],
                             n_perm=d.permutations, **col.test_kw())
    if not same_recipe:
        lt = D.DriftTest(lt.name, lt.statistic, lt.p_value, lt.verdict, lt.reason + " (recipe changed: live collection vs baseline collection)",
                         lt.n_a, lt.n_b, lt.extra)
    checks.append(lt)
    texts = col.ledger.get_documents(old_s + new_s)

    def doc_text(k: str) -> str:
        r = texts.get(k)
        return col.scrub(f"{r.title}\n{r.text or ''}") if r else ""

    vd = D.vocabulary_drift([doc_text(k) for k in old_s], [doc_text(k) for k in new_s], n_perm=d.permutations, top_terms=d.top_terms,
                            smoothing=d.term_smoothing, oov_warn=d.oov_warn, oov_alert=d.oov_alert, **col.test_kw())
    checks.append(vd.test)
    if vd.oov_test is not None:
        checks.append(vd.oov_test)
    # freshness and age
    last_ok: dict[str, datetime] = {}
    for r in runs.values():
        if r["status"] == "completed" and r["finished_at"] and r["feed"]:
            t = _ts(r["finished_at"])
            if t and (r["feed"] not in last_ok or t > last_ok[r["feed"]]):
                last_ok[r["feed"]] = t
    for feed, cur in col.ledger.all_cursors().items():
        t = _ts(cur["updated_at"])
        if t and (feed not in last_ok or t > last_ok[feed]):
            last_ok[feed] = t
    fresh_rows = []
    for feed, t in sorted(last_ok.items()):
        hours = max((col.now - t).total_seconds() / 3600.0, 0.0)
        v = D.threshold_verdict(hours, d.freshness_warn_hours, d.freshness_alert_hours)
        failed = sum(1 for r in runs.values() if r["feed"] == feed and r["status"] == "failed" and (_ts(r["started_at"]) or col.now) > t)
        fresh_rows.append({"feed": col.scrub(feed), "last_success": t.isoformat(), "hours_ago": _r(hours, 2), "failed_since": failed, "verdict": v.value})
        checks.append(D.DriftTest(f"freshness {col.scrub(feed)}", hours, None, v,
                                  f"last successful ingest {hours:.1f} h ago" + (f", {failed} failed run(s) since" if failed else ""),
                                  extra={"warn_hours": d.freshness_warn_hours, "alert_hours": d.freshness_alert_hours}))
    ages, future = [], 0
    for t in col.ledger.active_document_dates():
        days = (col.now - t).total_seconds() / 86400.0
        future += days < 0
        ages.append(max(days, 0.0))
    age = {"documents": len(ages), "future_dated": int(future)}
    if ages:
        a = np.asarray(ages)
        age.update({f"p{q}": _r(float(np.percentile(a, q)), 2) for q in (10, 50, 90)})
        age["max"] = _r(float(a.max()), 2)
        age["days"] = [_r(x, 2) for x in col.sample(ages, 2000, 4)]
    return _section(
        "corpus", checks, compares,
        figures={"chunk_lengths": {"baseline": [x for _, x in la], "new": [x for _, x in lb]}, "age_days": age},
        tables={"per_snapshot": per_run,
                "since_baseline": {"added": len(added), "updated": len(changed), "deleted": len(removed), "unchanged": len(unchanged),
                                   "sampled_new": len(new_s), "sampled_baseline": len(old_s)},
                "rising_terms": vd.rising, "falling_terms": vd.falling, "freshness": fresh_rows},
        notes=[f"baseline = {base_why}", "new = documents added or updated since the baseline; baseline sample = documents unchanged since",
               "a two-sample test alerts at p < %g and warns at p < %g; permutations move whole documents" % (d.alpha, d.warn_alpha)],
    )
