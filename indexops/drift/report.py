"""The drift report: gather from the ledger (and the live store), run the drift tests, and write
`drift-report.json` (every figure the report shows) and `drift-report.html` (self-contained).

Four sections, each with a verdict (ok / warn / alert, or n/a with the reason) and the snapshot
ids and recipe hashes it compares:

1. retrieval — recall@k, nDCG@10, MRR per retriever across eval runs; latest vs baseline with
   paired bootstrap CIs (verdicts by `regression.warn_drop` / `fail_drop` / `alpha`); the
   per-query regressions.
2. corpus — documents added / updated / deleted per snapshot, duplicate and quarantine rates,
   chunk-length test, vocabulary test and OOV share, freshness per feed, document ages.
3. embedding — MMD and domain-classifier tests of new chunks against the baseline's, and of
   recent production queries against the labeled queries, with 2-D projections.
4. coverage — share of recent production queries whose nearest labeled query is far.

Every text passes the `Redactor` (when `drift.redact`) before it enters the model; the HTML
renderer escapes every string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from indexops.drift import history as H
from indexops.drift import embedding_tests as E
from indexops.drift import statistics as D
from indexops.drift.corpus import corpus_section
from indexops.drift.redact import Redactor
from indexops.drift.sections import SECTIONS, _r, _section, _snap_ref, _ts, parse_since  # SECTIONS, parse_since: part of this module's API
from indexops.drift.summary import summarize
from indexops.drift.topics import uncovered_topics
from indexops.eval.regression import RegressionThresholds, Status, judge, paired_comparison
from indexops.index.context import IndexContext
from indexops.index.reader import open_snapshot
from indexops.ledger import Ledger
from indexops.settings import CONFIG_DIR, Settings

SCHEMA = "indexops.drift-report/1"
HTML_NAME, JSON_NAME = "drift-report.html", "drift-report.json"
_STATUS_LEVEL = {Status.PASS: D.Level.OK, Status.WARN: D.Level.WARN, Status.FAIL: D.Level.ALERT}


class WorkspaceNotFound(FileNotFoundError):
    """The workspace (or its ledger) does not exist."""


def _config_path(p: str | Path) -> Path:
    """A relative path from the working directory, else from configs/ (as `validation.suite`)."""
    path = Path(p)
    if path.is_absolute() or path.exists():
        return path
    alt = (CONFIG_DIR / path).resolve()
    return alt if alt.exists() else path


class _Collector:
    def __init__(self, workspace: Path, settings: Settings, since: datetime | None, now: datetime, scrub: Redactor,
                 query_log: Path | None) -> None:
        self.ws = workspace
        self.s = settings
        self.d = settings.drift
        self.since = since
        self.now = now
        self.scrub = scrub
        self.query_log = query_log
        self.notes: list[str] = []
        self.ctx: IndexContext | None = None
        self.ledger = Ledger.for_workspace(workspace, settings.ledger.url)
        # the collection the live alias serves, else the latest snapshot's — reopened with the
        # settings it was built with, so the report needs no recipe config
        alias = self.ledger.alias("live")
        latest = self.ledger.latest_snapshot()
        collection = alias["collection"] if alias else (latest["collection"] if latest else None)
        self.ctx_error = "" if collection else "no snapshot yet"
        if collection:
            try:  # a published snapshot: the report never opens the writer's shard
                self.ctx = open_snapshot(workspace, settings, None if alias else latest["snapshot_id"])
            except Exception as e:  # noqa: BLE001 - the ledger sections still report; the vector ones say why not
                self.ctx_error = f"{type(e).__name__}: {e}"
        self._query_cache: dict[str, Any] | None = None

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.close()
        self.ledger.close()

    def rng(self, tag: int) -> np.random.Generator:
        return np.random.default_rng([self.d.seed, tag])

    def sample(self, items: Sequence[Any], n: int, tag: int) -> list[Any]:
        items = sorted(items)
        if len(items) <= n:
            return list(items)
        idx = np.sort(self.rng(tag).choice(len(items), size=n, replace=False))
        return [items[i] for i in idx]

    def test_kw(self) -> dict[str, Any]:
        return {"alpha": self.d.alpha, "warn_alpha": self.d.warn_alpha, "seed": self.d.seed}

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshots(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any] | None, str]:
        snaps = self.ledger.list_snapshots()
        coll = self.ctx.collection if self.ctx else None
        live_snaps = [s for s in snaps if s["collection"] == coll] or snaps
        live = live_snaps[-1] if live_snaps else None
        if not snaps:
            return snaps, None, None, "no snapshot yet"
        if self.since is not None:
            before = [s for s in snaps if (_ts(s["created_at"]) or self.now) <= self.since]
            return snaps, (before[-1] if before else snaps[0]), live, (
                f"last snapshot at or before {self.since.isoformat()}" if before else f"no snapshot before {self.since.isoformat()}: the first one")
        if self.d.baseline == "pinned":
            pinned = [e for e in self.ledger.list_evals() if e["pinned"]]
            for e in reversed(pinned):
                match = [s for s in snaps if s["snapshot_id"] == e["snapshot_id"]]
                if match:
                    return snaps, match[-1], live, f"snapshot of the pinned baseline eval ({e['retriever']}, {e['eval_id'][:12]})"
            return snaps, snaps[0], live, "no pinned baseline eval: the first snapshot"
        return snaps, snaps[0], live, "the first snapshot"

    # ---- query texts -------------------------------------------------------------------------
    def labeled_queries(self) -> tuple[dict[str, str], str]:
        from indexops.eval.queries import _read_queries

        if self.d.labeled_queries is not None:
            p = _config_path(self.d.labeled_queries)
            if p.is_file():
                return _read_queries(p), f"{p.name}"
            return {}, f"labeled queries file {p} not found"
        evals = self.ledger.list_evals()
        if not evals:
            return {}, "no eval run: no labeled query set known"
        qh = evals[-1]["query_set_hash"]
        row = self.ledger.query_set(qh)
        if row is None or not row.source or " + " not in row.source:
            return {}, "the latest eval's query set has no readable source"
        qp, _, _rp = row.source.partition(" + ")
        if not Path(qp).is_file():
            return {}, f"the labeled queries file {Path(qp).name} is no longer readable"
        return _read_queries(Path(qp)), f"{row.name} ({qh[:12]})"

    def production_queries(self) -> tuple[list[dict[str, Any]], str]:
        path = self.query_log or self.d.query_log
        if path is None:
            return [], "no query log configured (drift.query_log)"
        p = _config_path(path)
        if not p.is_file():
            return [], f"query log {p.name} not found"
        rows, bad = [], 0
        with open(p, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    o = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if not isinstance(o, dict):
                    bad += 1
                    continue
                text = o.get("query", o.get("text", o.get("q")))
                if not isinstance(text, str) or not text.strip():
                    bad += 1
                    continue
                rows.append({"text": text, "ts": _ts(o.get("timestamp", o.get("ts", o.get("time"))))})
        stamped = [r["ts"] for r in rows if r["ts"] is not None]
        if self.since is not None:
            start = self.since
        elif stamped:
            start = max(stamped) - timedelta(days=self.d.query_window_days)
        else:
            start = None
        recent = [r for r in rows if start is None or r["ts"] is None or r["ts"] >= start]
        info = f"{len(recent)} of {len(rows)} logged queries" + (f" since {start.isoformat()}" if start else "") + (f", {bad} unreadable lines" if bad else "")
        return recent, info

    def query_vectors(self) -> dict[str, Any]:
        """Embeddings of recent production queries and of the labeled queries (cached)."""
        if self._query_cache is not None:
            return self._query_cache
        labeled, lab_info = self.labeled_queries()
        prod, prod_info = self.production_queries()
        out: dict[str, Any] = {"labeled_info": lab_info, "production_info": prod_info, "labeled": {}, "production": [],
                               "lab_vecs": np.zeros((0, 1)), "prod_vecs": np.zeros((0, 1))}
        if self.ctx is not None and labeled and prod:
            prod = [prod[i] for i in self.sample(list(range(len(prod))), self.d.max_sample, 41)]
            qids = sorted(labeled)
            out["labeled"] = {q: labeled[q] for q in qids}
            out["production"] = prod
            out["lab_vecs"] = np.asarray(self.ctx.embedder.embed([labeled[q] for q in qids]), np.float64)
            out["prod_vecs"] = np.asarray(self.ctx.embedder.embed([r["text"] for r in prod]), np.float64)
        self._query_cache = out
        return out

    # ---- 1. retrieval ----------------------------------------------------------------------------
    def retrieval(self) -> dict[str, Any]:
        evals = self.ledger.list_evals()
        if not evals:
            return _section("retrieval", [D.not_applicable("eval runs", "no eval run in the ledger: run `indexops eval` or the evaluate flow")], [])
        qh = evals[-1]["query_set_hash"]
        labeled, _ = self.labeled_queries()
        reg = self.s.regression
        thresholds = RegressionThresholds(warn_drop=reg.warn_drop, fail_drop=reg.fail_drop, alpha=reg.alpha, metrics=reg.metrics)
        checks: list[D.DriftTest] = []
        compares, series, latest_rows, regressions = [], {}, [], []
        retrievers = sorted({e["retriever"] for e in evals if e["query_set_hash"] == qh})
        for r in retrievers:
            runs = [e for e in evals if e["retriever"] == r and e["query_set_hash"] == qh]
            window = [e for e in runs if self.since is None or (_ts(e["created_at"]) or self.now) >= self.since] or runs[-1:]
            metrics = [m for m in self.d.retrieval_metrics if m in window[-1]["metrics"].get("means", {})]
            series[r] = [{"eval_id": e["eval_id"], "created_at": e["created_at"], "snapshot_id": e["snapshot_id"],
                          "metrics": {m: _r(e["metrics"]["means"].get(m), 6) for m in metrics}} for e in window]
            latest = window[-1]
            pinned = self.ledger.pinned_eval(r, qh)
            base = pinned if pinned is not None and pinned["eval_id"] != latest["eval_id"] else (window[0] if len(window) > 1 else None)
            if base is None:
                checks.append(D.not_applicable(f"{r}", "only one eval run: nothing to compare yet"))
                continue
            compares.append({"label": f"{r} eval", "baseline": {"eval_id": base["eval_id"], "snapshot_id": base["snapshot_id"],
                                                                 "recipe_hash": base["recipe"].get("index_recipe_hash"), "pinned": bool(base.get("pinned"))},
                             "current": {"eval_id": latest["eval_id"], "snapshot_id": latest["snapshot_id"],
                                         "recipe_hash": latest["recipe"].get("index_recipe_hash")}})
            bq, _ = self.ledger.eval_queries(base["eval_id"])
            cq, _ = self.ledger.eval_queries(latest["eval_id"])
            for m in metrics:
                b = {q: v[m] for q, v in bq.items() if m in v}
                c = {q: v[m] for q, v in cq.items() if m in v}
                if not b and not c:
                    continue
                comp = paired_comparison(b, c, metric=m, confidence=1.0 - reg.alpha, n_resamples=self.d.bootstrap,
                                         n_permutations=self.d.bootstrap, seed=self.d.seed)
                mv = judge(comp, thresholds)
                checks.append(D.DriftTest(f"{r} {m}", comp.mean_delta, comp.p_value, _STATUS_LEVEL[mv.status], mv.reason,
                                          comp.n_queries, comp.n_queries,
                                          {"baseline": _r(comp.mean_baseline, 6), "latest": _r(comp.mean_candidate, 6), "ci_low": _r(comp.ci_low, 6),
                                           "ci_high": _r(comp.ci_high, 6), "confidence": comp.confidence, "wins": comp.wins, "ties": comp.ties,
                                           "losses": comp.losses}))
                latest_rows.append({"retriever": r, "metric": m, "baseline": _r(comp.mean_baseline), "latest": _r(comp.mean_candidate),
                                    "delta": _r(comp.mean_delta), "ci_low": _r(comp.ci_low), "ci_high": _r(comp.ci_high), "p_value": _r(comp.p_value),
                                    "verdict": _STATUS_LEVEL[mv.status].value})
            for q in sorted(set(bq) | set(cq)):
                deltas = {m: cq.get(q, {}).get(m, 0.0) - bq.get(q, {}).get(m, 0.0) for m in metrics}
                worst = min(deltas.values(), default=0.0)
                if worst < -1e-9:
                    regressions.append({"retriever": r, "qid": self.scrub(q), "query": self.scrub(labeled.get(q, ""))[:200],
                                        "worst_delta": _r(worst), **{f"{m} baseline": _r(bq.get(q, {}).get(m, 0.0)) for m in metrics},
                                        **{f"{m} latest": _r(cq.get(q, {}).get(m, 0.0)) for m in metrics}})
        regressions.sort(key=lambda x: (x["worst_delta"], x["retriever"], x["qid"]))
        return _section("retrieval", checks, compares, figures={"series": series},
                        tables={"latest_vs_baseline": latest_rows, "regressions": regressions[: self.d.regressions_shown],
                                "regressions_total": len(regressions)},
                        notes=[f"query set {qh[:12]}; verdict per metric: warn on a mean drop > {reg.warn_drop}, alert on a drop > "
                               f"{reg.fail_drop} whose {1 - reg.alpha:.0%} CI lies below zero (regression settings)"])

    # ---- 3. embedding ------------------------------------------------------------------------------
    def _chunk_vectors(self, doc_ids: list[str], tag: int) -> tuple[np.ndarray, list[str], list[str]]:
        assert self.ctx is not None
        rows = [r for rs in self.ledger.chunks_for_docs(self.ctx.collection, doc_ids).values() for r in rs]
        rows = sorted(rows, key=lambda r: r.chunk_id)
        if len(rows) > self.d.max_sample:
            rows = [rows[i] for i in np.sort(self.rng(tag).choice(len(rows), self.d.max_sample, replace=False))]
        got: dict[str, dict[str, Any]] = {}
        for i in range(0, len(rows), 256):
            for p in self.ctx.store.retrieve([r.point_id for r in rows[i: i + 256]], with_vectors=True):
                got[p["point_id"]] = p
        docs = self.ledger.get_documents({r.doc_id for r in rows})
        vecs, groups, texts, missing = [], [], [], []
        for r in rows:
            p = got.get(r.point_id, {})
            text = (p.get("payload") or {}).get("text") or (docs[r.doc_id].text if r.doc_id in docs else "") or ""
            texts.append(text)
            groups.append(r.doc_id)
            vecs.append(p.get("dense"))
            if not p.get("dense"):
                missing.append(len(vecs) - 1)
        if missing:  # the store could not return vectors: embed the chunk texts again
            emb = self.ctx.embedder.embed([texts[i] for i in missing])
            for j, i in enumerate(missing):
                vecs[i] = emb[j]
        arr = np.asarray([np.asarray(v, np.float64) for v in vecs]) if vecs else np.zeros((0, 1))
        return arr, groups, texts

    def embedding(self, base: dict[str, Any] | None, live: dict[str, Any] | None, base_why: str) -> dict[str, Any]:
        d = self.d
        checks: list[D.DriftTest] = []
        compares: list[dict[str, Any]] = []
        figures: dict[str, Any] = {}
        tables: dict[str, Any] = {}
        notes = []
        if self.ctx is None:
            checks.append(D.not_applicable("chunks", f"the live collection cannot be opened: {self.ctx_error}"))
        elif base is None or live is None:
            checks.append(D.not_applicable("chunks", "no snapshot yet"))
        else:
            base_v = self.ledger.doc_versions_at(int(base.get("ledger_version", 0)))
            live_v = self.ledger.doc_versions_at(int(live.get("ledger_version", 0)))
            new_ids = self.sample([k for k in live_v if base_v.get(k) != live_v[k]], d.max_sample, 5)
            old_ids = self.sample([k for k in live_v if base_v.get(k) == live_v[k]], d.max_sample, 6)
            compares.append({"label": "chunks", "baseline": _snap_ref(base), "current": _snap_ref(live), "why": base_why})
            if base["collection"] != live["collection"]:
                notes.append("the recipe changed since the baseline: both samples are taken from the live collection, in its embedding space")
            if not new_ids:
                checks.append(D.not_applicable("new chunks vs baseline", "no document added or updated since the baseline snapshot", len(old_ids), 0))
            else:
                xa, ga, _ = self._chunk_vectors(old_ids, 7)
                xb, gb, tb = self._chunk_vectors(new_ids, 8)
                m = E.mmd_test(xa, xb, groups_x=ga, groups_y=gb, n_perm=d.permutations, name="chunks: MMD² (RBF)", **self.test_kw())
                c = E.classifier_test(xa, xb, groups_x=ga, groups_y=gb, name="chunks: domain classifier AUC", **self.test_kw())
                checks += [m, c]
                figures["chunks_projection"] = E.projection_2d(xa, xb) if len(xa) and len(xb) else {"a": [], "b": []}
                if len(xa) and len(xb):
                    sims, _ = E.nearest_similarity(xb, xa)
                    order = np.argsort(sims, kind="stable")[:10]
                    tables["farthest_new_chunks"] = [{"doc_id": self.scrub(gb[i]), "similarity": _r(float(sims[i])),
                                                      "excerpt": self.scrub(tb[i])[:240]} for i in order]
        qv = self.query_vectors()
        if len(qv["production"]) and len(qv["labeled"]):
            compares.append({"label": "queries", "baseline": {"labeled_queries": qv["labeled_info"]}, "current": {"production_queries": qv["production_info"]}})
            checks.append(E.mmd_test(qv["lab_vecs"], qv["prod_vecs"], n_perm=d.permutations, name="queries: MMD² (RBF)", **self.test_kw()))
            checks.append(E.classifier_test(qv["lab_vecs"], qv["prod_vecs"], name="queries: domain classifier AUC", **self.test_kw()))
            figures["queries_projection"] = E.projection_2d(qv["lab_vecs"], qv["prod_vecs"])
        else:
            notes.append(f"query drift not measured: {qv['production_info'] if not qv['production'] else qv['labeled_info']}")
        return _section("embedding", checks or [D.not_applicable("embedding", "nothing to compare")], compares, figures=figures, tables=tables, notes=notes)

    # ---- 4. coverage -----------------------------------------------------------------------------
    def coverage(self) -> dict[str, Any]:
        d = self.d
        if self.ctx is None:
            return _section("coverage", [D.not_applicable("coverage", f"the live collection cannot be opened: {self.ctx_error}")], [])
        qv = self.query_vectors()
        if not qv["production"] or not qv["labeled"]:
            why = qv["production_info"] if not qv["production"] else qv["labeled_info"]
            return _section("coverage", [D.not_applicable("coverage (nearest labeled query)", why)], [])
        c = E.coverage_check(qv["prod_vecs"], qv["lab_vecs"], threshold=d.coverage_threshold, warn_share=d.coverage_warn, alert_share=d.coverage_alert)
        qids = list(qv["labeled"])
        sims = c.extra.pop("nearest")
        idx = c.extra.pop("nearest_index")
        far = sorted(range(len(sims)), key=lambda i: (sims[i], i))
        rows = [{"query": self.scrub(qv["production"][i]["text"])[:200], "similarity": sims[i], "nearest_qid": self.scrub(qids[idx[i]]),
                 "nearest_labeled": self.scrub(qv["labeled"][qids[idx[i]]])[:200], "covered": sims[i] >= d.coverage_threshold} for i in far[:15]]
        if c.verdict in (D.Level.WARN, D.Level.ALERT):  # the headline names what is not covered
            shown = [r["query"][:80] for r in rows if not r["covered"]][:2]
            c = D.DriftTest(c.name, c.statistic, c.p_value, c.verdict, c.reason + "; farthest: " + ", ".join(f'"{q}"' for q in shown),
                            c.n_a, c.n_b, c.extra)
        compares = [{"label": "queries", "baseline": {"labeled_queries": qv["labeled_info"]}, "current": {"production_queries": qv["production_info"]}}]
        topics = uncovered_topics([self.scrub(r["text"]) for r in qv["production"]], qv["prod_vecs"], [s >= d.coverage_threshold for s in sims])
        return _section("coverage", [c], compares, figures={"nearest_similarity": sims, "threshold": d.coverage_threshold},
                        tables={"uncovered_topics": topics, "farthest_queries": rows})

    def build(self) -> dict[str, Any]:
        snaps, base, live, why = self.snapshots()
        sections = [self.retrieval(), corpus_section(self, snaps, base, live, why), self.embedding(base, live, why), self.coverage()]
        rep = {
            "schema": SCHEMA, "generated_at": self.now.isoformat(), "workspace": self.scrub(self.ws.name),
            "since": self.since.isoformat() if self.since else None, "redacted": self.scrub.enabled,
            "verdict": D.Level.worst([s["verdict"] for s in sections]).value,
            "live": _snap_ref(live), "baseline": _snap_ref(base), "baseline_rule": why,
            "settings": self.d.model_dump(mode="json") | {"query_log": str(self.query_log or self.d.query_log or "") or None},
            "sections": sections,
        }
        return rep | {"summary": summarize(rep)}


def _ledger_exists(workspace: Path, settings: Settings) -> bool:
    return bool(settings.ledger.url) or (workspace / "ledger.db").is_file()


def build_drift_report(
    workspace: str | Path,
    settings: Settings,
    *,
    since: str | datetime | None = None,
    now: datetime | None = None,
    redact: bool | None = None,
    query_log: str | Path | None = None,
) -> dict[str, Any]:
    """Gather every figure of the drift report into one JSON-able dict.

    Args:
        workspace: The workspace directory (ledger, collections).
        settings: Loaded settings; `settings.drift` holds the thresholds.
        since: Report window start (ISO date or datetime): the corpus baseline becomes the last
            snapshot at or before it, eval runs and production queries are taken from it on.
        now: The report's clock (freshness, ages); default: the current UTC time.
        redact: Override `drift.redact`.
        query_log: Override `drift.query_log`.

    Returns:
        The report model (see `SCHEMA`); every section has `verdict`, `reason`, `compares`, `checks`.

    Raises:
        WorkspaceNotFound: the workspace or its ledger does not exist.
        ValueError: `since` is not an ISO date.
    """
    ws = Path(workspace)
    if not ws.is_dir() or not _ledger_exists(ws, settings):
        raise WorkspaceNotFound(f"workspace {ws} does not exist or has no ledger; run `indexops ingest` first")
    col = _Collector(ws, settings, parse_since(since), now or datetime.now(timezone.utc),
                     Redactor(settings.drift.redact if redact is None else redact), Path(query_log) if query_log else None)
    try:
        return col.build()
    finally:
        col.close()


def write_drift_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write `drift-report.json` and the self-contained `drift-report.html` into `out_dir` (the
    latest) and into `out_dir/<UTC timestamp>/` (the history), then rebuild `out_dir/index.html`."""
    from indexops.drift.html import render_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = json.dumps(report, indent=2, sort_keys=False, ensure_ascii=False)
    arch = H.archive_dir(out, report.get("generated_at"))
    for d, index_href in ((arch, "../" + H.INDEX_NAME), (out, H.INDEX_NAME)):
        (d / JSON_NAME).write_text(js, encoding="utf-8")
        (d / HTML_NAME).write_text(render_html(report, index_href=index_href), encoding="utf-8")
    return {"html": (out / HTML_NAME).resolve(), "json": (out / JSON_NAME).resolve(), "archived": (arch / HTML_NAME).resolve(),
            "index": H.write_index(out, JSON_NAME, HTML_NAME)}


def headline(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section title, verdict, reason) per section."""
    return [(s["title"], s["verdict"], s["reason"]) for s in report["sections"]]
