"""Render the drift report model as one self-contained HTML file (inline CSS, plots as inline
PNG from matplotlib's Agg canvas, no script, no external URL) and as headline markdown.

Every string from the model goes through `html.escape` (or `_md` for markdown): document texts,
queries and ids are data, never markup. A Content-Security-Policy without script sources is a
second fence.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from typing import Any

import numpy as np

_COLORS = {"ok": "#1a7f37", "warn": "#b58100", "alert": "#cf222e", "n/a": "#6e7781"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#fff;border-bottom:1px solid #d0d7de;padding:16px 32px}
main{padding:8px 32px 48px;max-width:1200px}
h1{margin:0 0 6px;font-size:1.5em} h2{font-size:1.25em;margin:0 0 8px} h3{font-size:1.05em;margin:18px 0 6px}
section.section{background:#fff;border:1px solid #d0d7de;border-left:6px solid var(--v);border-radius:6px;padding:16px 20px;margin:18px 0}
.badge{white-space:nowrap;display:inline-block;padding:1px 9px;border-radius:10px;color:#fff;font-size:.8em;font-weight:600;vertical-align:middle;background:var(--v)}
.v-ok{--v:#1a7f37}.v-warn{--v:#b58100}.v-alert{--v:#cf222e}.v-na{--v:#6e7781}
table{border-collapse:collapse;margin:6px 0 12px;font-size:.86em}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top;max-width:520px;overflow-wrap:anywhere}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.9em} .muted{color:#57606a;font-size:.88em} .reason{margin:4px 0 10px}
figure{display:inline-block;margin:6px 12px 6px 0;vertical-align:top} figcaption{font-size:.82em;color:#57606a}
img{max-width:100%;border:1px solid #eaeef2}
nav a{margin-right:14px} header{padding:12px 32px} .overall{font-size:1.08em;margin:4px 0 6px;font-weight:500}
section.glance{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px 20px;margin:12px 0}
ul.glance{list-style:none;padding:0;margin:0 0 6px} ul.glance li{margin:5px 0;line-height:1.4}
details{margin:8px 0} details>summary{cursor:pointer;color:#0969da;font-size:.92em}
.howto{background:#f6f8fa;border:1px solid #eaeef2;border-radius:6px;padding:6px 12px;margin:8px 0;font-size:.86em}
.howto ul{margin:4px 0;padding-left:18px}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _lv(v: str) -> str:
    return "v-na" if v == "n/a" else f"v-{v}"


def _badge(v: str) -> str:
    return f'<span class="badge {_lv(v)}">{_e(str(v).upper())}</span>'


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def _sid(x: Any) -> str:
    s = "" if x is None else str(x)
    return f'<code title="{_e(s)}">{_e(s[:16])}</code>' if len(s) > 16 else f"<code>{_e(s) or '–'}</code>"


def _table(rows: list[dict[str, Any]], cols: list[str] | None = None, verdict_col: str | None = "verdict") -> str:
    if not rows:
        return '<p class="muted">none</p>'
    cols = cols or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c == verdict_col and isinstance(v, str):
                cells.append(f"<td>{_badge(v)}</td>")
            elif c in ("snapshot_id", "run_id", "eval_id") and v:
                cells.append(f"<td>{_sid(v)}</td>")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<td class="num">{_e(_fmt(v))}</td>')
            else:
                cells.append(f"<td>{_e(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ---- plots ---------------------------------------------------------------------------------------


def _fig(w: float = 6.0, h: float = 3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    f = Figure(figsize=(w, h), dpi=90)
    FigureCanvasAgg(f)
    return f


def _png(f: Any, caption: str) -> str:
    buf = io.BytesIO()
    f.tight_layout()
    f.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption></figure>'


def _when(s: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t).astimezone(timezone.utc).replace(tzinfo=None)


def _baselines(compares: list[dict[str, Any]]) -> dict[str, str]:
    """retriever -> the eval id its latest run is compared with."""
    return {str(c["label"]).removesuffix(" eval"): (c.get("baseline") or {}).get("eval_id", "")
            for c in compares if str(c.get("label", "")).endswith(" eval")}


def _plot_trend(series: dict[str, list[dict[str, Any]]], baselines: dict[str, str]) -> str:
    """Each metric per retriever against the eval run's time; the baseline run ringed."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    metrics = list(dict.fromkeys(m for runs in series.values() for e in runs for m in e["metrics"]))[:3]
    if not metrics or not any(len(r) for r in series.values()):
        return ""
    f = _fig(3.9 * len(metrics) + 0.6, 2.7)
    for i, m in enumerate(metrics):
        ax = f.add_subplot(1, len(metrics), i + 1)
        for r, runs in sorted(series.items()):
            pts = [(_when(e["created_at"]), e["metrics"].get(m), e["eval_id"]) for e in runs]
            pts = [(t, np.nan if y is None else y, ev) for t, y, ev in pts if t is not None]
            if not pts:
                continue
            line = ax.plot([t for t, _, _ in pts], [y for _, y, _ in pts], marker="o", ms=4, label=r)[0]
            for t, y, ev in pts:
                if ev == baselines.get(r):
                    ax.plot([t], [y], marker="o", ms=11, mfc="none", mec=line.get_color(), mew=1.6)
                    ax.annotate("baseline", (t, y), textcoords="offset points", xytext=(4, -12), fontsize=6, color=line.get_color())
        lo, hi = ax.get_xlim()
        if hi - lo < 1 / 1440:  # one run (or runs within a minute): a day-wide window, so the locator can tick
            ax.set_xlim(lo - 0.5, hi + 0.5)
        loc = AutoDateLocator()
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(loc))
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7, loc="lower left")
    return _png(f, "metric per retriever by eval time (UTC); ringed: the baseline run each retriever is compared with")


def _runs_table(series: dict[str, list[dict[str, Any]]]) -> str:
    """The trend chart's points with their snapshot and eval ids."""
    rows = []
    for r, runs in sorted(series.items()):
        for e in runs:
            rows.append({"created_at": e["created_at"], "retriever": r, "snapshot_id": e["snapshot_id"], "eval_id": e["eval_id"], **e["metrics"]})
    rows.sort(key=lambda x: (str(x["created_at"]), x["retriever"]))
    return _table(rows, verdict_col=None)


def _plot_deltas(rows: list[dict[str, Any]]) -> str:
    rows = [r for r in rows if r.get("delta") is not None]
    if not rows:
        return ""
    f = _fig(6.0, 0.35 * len(rows) + 1.2)
    ax = f.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    d = np.array([r["delta"] for r in rows])
    lo = d - np.array([r["ci_low"] if r["ci_low"] is not None else r["delta"] for r in rows])
    hi = np.array([r["ci_high"] if r["ci_high"] is not None else r["delta"] for r in rows]) - d
    colors = [_COLORS.get(r["verdict"], "#6e7781") for r in rows]
    ax.barh(y, d, xerr=[lo, hi], color=colors, alpha=0.8, capsize=3)
    ax.axvline(0, color="#57606a", lw=0.8)
    ax.set_yticks(y, [f"{r['retriever']} {r['metric']}" for r in rows], fontsize=7)
    ax.set_xlabel("latest − baseline (mean, with CI)", fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(f, "latest versus baseline: mean per-query delta and its confidence interval")


def _plot_changes(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    f = _fig(6.0, 2.8)
    ax = f.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    a = np.array([r["added"] for r in rows])
    u = np.array([r["updated"] for r in rows])
    dl = np.array([r["deleted"] for r in rows])
    ax.bar(x, a, label="added", color="#1a7f37")
    ax.bar(x, u, bottom=a, label="updated", color="#0969da")
    ax.bar(x, dl, bottom=a + u, label="deleted", color="#cf222e")
    ax.set_xticks(x, [str(r.get("created_at") or "")[5:16].replace("T", "\n") or str(i + 1) for i, r in zip(x, rows)])
    ax.set_xlabel("snapshot created (UTC, oldest first)", fontsize=8)
    ax.set_ylabel("documents", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return _png(f, "documents added, updated and deleted per snapshot")


def _plot_hist2(a: list[float], b: list[float], la: str, lb: str, xlabel: str, caption: str) -> str:
    if not a and not b:
        return ""
    f = _fig(4.6, 2.8)
    ax = f.add_subplot(1, 1, 1)
    allv = np.asarray(list(a) + list(b), dtype=float)
    bins = np.histogram_bin_edges(allv, bins=min(30, max(5, int(np.sqrt(len(allv))))))
    if a:
        ax.hist(a, bins=bins, density=True, alpha=0.55, label=f"{la} (n={len(a)})", color="#6e7781")
    if b:
        ax.hist(b, bins=bins, density=True, alpha=0.55, label=f"{lb} (n={len(b)})", color="#0969da")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return _png(f, caption)


def _plot_terms(rising: list[dict[str, Any]], falling: list[dict[str, Any]]) -> str:
    rows = rising[::-1] + falling
    if not rows:
        return ""
    f = _fig(4.8, 0.28 * len(rows) + 1.0)
    ax = f.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    v = [r["log_ratio"] for r in rows]
    ax.barh(y, v, color=["#0969da" if x > 0 else "#cf222e" for x in v])
    ax.set_yticks(y, [r["term"] for r in rows], fontsize=7)
    ax.axvline(0, color="#57606a", lw=0.8)
    ax.set_xlabel("log-ratio of the term's rate, new vs baseline (smoothed)", fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(f, "terms that rose (blue) and fell (red)")


def _plot_ages(days: list[float]) -> str:
    if not days:
        return ""
    f = _fig(4.6, 2.6)
    ax = f.add_subplot(1, 1, 1)
    ax.hist(days, bins=min(30, max(5, int(np.sqrt(len(days))))), color="#8250df", alpha=0.8)
    ax.set_xlabel("document age (days since updated_at)", fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(f, "age distribution of active documents")


def _plot_projection(p: dict[str, Any], la: str, lb: str, caption: str) -> str:
    if not p or not p.get("a") or not p.get("b"):
        return ""
    f = _fig(4.4, 3.4)
    ax = f.add_subplot(1, 1, 1)
    a, b = np.asarray(p["a"]), np.asarray(p["b"])
    ax.scatter(a[:, 0], a[:, 1], s=10, alpha=0.6, label=f"{la} (n={len(a)})", color="#6e7781")
    ax.scatter(b[:, 0], b[:, 1], s=10, alpha=0.7, label=f"{lb} (n={len(b)})", color="#cf222e", marker="x")
    ev = p.get("explained_variance") or []
    ax.set_xlabel(f"PC1 ({ev[0]:.0%})" if ev else "PC1", fontsize=8)
    ax.set_ylabel(f"PC2 ({ev[1]:.0%})" if len(ev) > 1 else "PC2", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return _png(f, caption)


def _plot_coverage(sims: list[float], thr: float) -> str:
    if not sims:
        return ""
    f = _fig(4.6, 2.6)
    ax = f.add_subplot(1, 1, 1)
    ax.hist(sims, bins=min(30, max(5, int(np.sqrt(len(sims))))), color="#0969da", alpha=0.8)
    ax.axvline(thr, color="#cf222e", lw=1.2, label=f"threshold {thr}")
    ax.set_xlabel("cosine similarity to the nearest labeled query", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return _png(f, "recent production queries: similarity to the nearest labeled query")


# ---- sections ------------------------------------------------------------------------------------


def _compares(cs: list[dict[str, Any]]) -> str:
    if not cs:
        return ""
    out = ['<table class="compares"><thead><tr><th>compares</th><th>baseline</th><th>current</th></tr></thead><tbody>']
    for c in cs:
        cells = []
        for side in ("baseline", "current"):
            d = c.get(side) or {}
            parts = []
            for k, v in d.items():
                if v is None:
                    continue
                val = _sid(v) if k in ("snapshot_id", "recipe_hash", "eval_id") else _e(_fmt(v))
                parts.append(f"{_e(k)}: {val}")
            cells.append("<br>".join(parts) or "–")
        why = f'<br><span class="muted">{_e(c["why"])}</span>' if c.get("why") else ""
        out.append(f"<tr><td>{_e(c.get('label'))}{why}</td><td>{cells[0]}</td><td>{cells[1]}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _checks(checks: list[dict[str, Any]]) -> str:
    rows = [{"check": c["name"], "verdict": c["verdict"], "statistic": c["statistic"], "p-value": c["p_value"],
             "n baseline": c["n_a"], "n new": c["n_b"], "reason": c["reason"]} for c in checks]
    return _table(rows)


# How to read each kind of check (matched on the start of its name, first match wins).
_HOW_TO_READ = [
    ("queries: MMD", "MMD² (queries): the distance between the embedding distributions of production and labeled queries; "
                     "the p-value comes from shuffling queries between the two sets. Small p = users ask differently from the labeled set."),
    ("queries: domain", "Domain classifier (queries): a classifier tries to tell production from labeled queries; "
                        "AUC 0.5 = indistinguishable, 1.0 = fully separable; p from its cross-validated AUC."),
    ("chunks: MMD", "MMD² (chunks): the distance between the embedding distributions of new and baseline chunks; the p-value "
                    "comes from shuffling whole documents between the samples. Small p = the new content sits elsewhere."),
    ("chunks: domain", "Domain classifier (chunks): can a classifier tell new chunks from baseline ones? AUC 0.5 = no, 1.0 = always."),
    ("vocabulary", "Vocabulary (JSD): Jensen-Shannon divergence between the term distributions of new and baseline documents; "
                   "p from shuffling documents. The rising and falling terms say in which direction it moved."),
    ("out-of-vocabulary", "OOV share: the share of new documents' tokens never seen in the baseline; fixed warn/alert thresholds."),
    ("chunk length", "Chunk length (KS): the largest gap between the two cumulative length distributions; p from shuffling documents."),
    ("coverage", "Coverage: the share of recent production queries whose nearest labeled query (cosine) is below the threshold; "
                 "fixed warn/alert shares, no p-value. The topics group those queries: write labeled queries for them."),
    ("freshness", "Freshness: hours since the feed's last successful ingest, against fixed warn/alert hours."),
    ("", "Retrieval metric: delta = latest minus baseline mean over the labeled queries; CI = paired bootstrap interval of the delta; "
         "p from a paired permutation test; win/tie/loss count queries that got better, stayed, got worse. Alert only on a drop past "
         "regression.fail_drop whose CI lies below zero; warn on a drop past regression.warn_drop."),
]
_RATES = "Rates (quarantine, duplicate, deleted): a share of records compared with fixed warn/alert thresholds; no p-value."


def _how_to_read(s: dict[str, Any]) -> str:
    notes: dict[str, str] = {}
    for c in s.get("checks", []):
        name = str(c.get("name", ""))
        if name.endswith(" rate") or name.startswith("deleted since"):
            notes.setdefault("rates", _RATES)
            continue
        if c.get("verdict") == "n/a":
            continue
        for prefix, text in _HOW_TO_READ:
            if name.startswith(prefix) and (prefix or s["id"] == "retrieval"):
                notes.setdefault(prefix, text)
                break
    items = "".join(f"<li>{_e(t)}</li>" for t in notes.values())
    return f'<div class="howto"><strong>How to read this</strong><ul>{items}</ul></div>' if items else ""


def _details(summary: str, body: str, cls: str = "") -> str:
    return f'<details{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}><summary>{_e(summary)}</summary>{body}</details>' if body else ""


def _body(s: dict[str, Any]) -> tuple[str, str]:
    """(what an analyst reads first, the detail one click away) for one section."""
    f, t = s.get("figures", {}), s.get("tables", {})
    shown: list[str] = []
    more: list[str] = []
    sid = s["id"]
    if sid == "retrieval":
        shown.append(_plot_deltas(t.get("latest_vs_baseline", [])))
        total = t.get("regressions_total", 0)
        regs = t.get("regressions", [])
        if regs:
            shown.append(f"<h3>Labeled queries that got worse ({_e(total)}; worst first)</h3>"
                         + _table(regs[:10], verdict_col=None)
                         + (_details(f"{len(regs) - 10} more", _table(regs[10:], verdict_col=None)) if len(regs) > 10 else ""))
        more.append("<h3>Latest versus baseline</h3>" + _table(t.get("latest_vs_baseline", [])))
        more.append("<h3>Eval runs (the trend chart's points)</h3>" + _runs_table(f.get("series", {})))
    elif sid == "corpus":
        cl = f.get("chunk_lengths", {})
        age = f.get("age_days", {})
        shown.append(_plot_changes(t.get("per_snapshot", [])) + _plot_terms(t.get("rising_terms", []), t.get("falling_terms", [])))
        more.append(_plot_hist2(cl.get("baseline", []), cl.get("new", []), "baseline", "new", "chunk length (characters)", "chunk-length distribution, baseline vs new")
                    + _plot_ages(age.get("days", [])))
        sb = t.get("since_baseline", {})
        more.append("<h3>Since the baseline</h3>" + _table([sb], verdict_col=None) if sb else "")
        more.append("<h3>Per snapshot</h3>" + _table(t.get("per_snapshot", []),
                                                     ["created_at", "snapshot_id", "feed", "received", "added", "updated", "deleted",
                                                      "duplicates", "quarantined", "duplicate_rate", "quarantine_rate", "counts_from"]))
        more.append("<h3>Rising terms</h3>" + _table(t.get("rising_terms", []), verdict_col=None))
        more.append("<h3>Falling terms</h3>" + _table(t.get("falling_terms", []), verdict_col=None))
        more.append("<h3>Freshness</h3>" + _table(t.get("freshness", [])))
        more.append("<h3>Document age (days)</h3>" + _table([{k: v for k, v in age.items() if k != "days"}], verdict_col=None))
    elif sid == "embedding":
        shown.append(_plot_projection(f.get("chunks_projection", {}), "baseline chunks", "new chunks", "2-D PCA projection of chunk embeddings")
                     + _plot_projection(f.get("queries_projection", {}), "labeled queries", "production queries", "2-D PCA projection of query embeddings"))
        if "farthest_new_chunks" in t:
            more.append("<h3>New chunks farthest from the baseline</h3>" + _table(t["farthest_new_chunks"], verdict_col=None))
    elif sid == "coverage":
        topics = t.get("uncovered_topics")
        if topics:
            rows = [{"topic": x["topic"], "queries": x["queries"], "share of all": f"{x['share']:.0%}",
                     "example queries": " · ".join(x["examples"])} for x in topics]
            shown.append("<h3>Uncovered production queries by topic: write labeled queries for these</h3>" + _table(rows, verdict_col=None))
        shown.append(_plot_coverage(f.get("nearest_similarity", []), f.get("threshold", 0.0)))
        if "farthest_queries" in t:
            more.append("<h3>Production queries farthest from the labeled set</h3>" + _table(t["farthest_queries"], verdict_col=None))
    return "".join(shown), "".join(more)


def render_html(report: dict[str, Any], index_href: str | None = None) -> str:
    """The whole report as one HTML document: no script, no external resource. The first screen
    holds the overall verdict, one summary sentence per section and the retrieval trend chart;
    checks, p-values, confidence intervals and ids sit in `<details>` one click away."""
    from indexops.drift.summary import summarize

    live, base = report.get("live") or {}, report.get("baseline") or {}
    summ = report.get("summary") or summarize(report)
    sents = summ.get("sections", {})
    nav = "".join(f'<a href="#sec-{_e(s["id"])}">{i}. {_e(s["title"])}</a>' for i, s in enumerate(report["sections"], 1))
    if index_href:
        nav += f'<a href="{_e(index_href)}">All reports</a>'
    glance = "".join(
        f'<li class="{_lv(s["verdict"])}" data-summary="{_e(s["id"])}">{_badge(s["verdict"])} <a href="#sec-{_e(s["id"])}">{_e(s["title"])}</a>: '
        f'{_e(sents.get(s["id"], s["reason"]))}</li>' for s in report["sections"])
    retr = next((s for s in report["sections"] if s["id"] == "retrieval"), {})
    trend = _plot_trend((retr.get("figures") or {}).get("series", {}), _baselines(retr.get("compares", [])))
    secs = []
    for i, s in enumerate(report["sections"], 1):
        notes = "".join(f'<p class="muted">{_e(n)}</p>' for n in s.get("notes", []))
        shown, more = _body(s)
        stats = (f'{_how_to_read(s)}<p class="muted">Verdict reason: {_e(s["reason"])}</p>{_compares(s.get("compares", []))}'
                 f"<h3>Checks</h3>{_checks(s.get('checks', []))}{more}{notes}")
        secs.append(
            f'<section id="sec-{_e(s["id"])}" class="section {_lv(s["verdict"])}" data-section="{_e(s["id"])}" data-verdict="{_e(s["verdict"])}">'
            f'<h2>{i}. {_e(s["title"])} {_badge(s["verdict"])}</h2><p class="reason">{_e(sents.get(s["id"], s["reason"]))}</p>'
            f"{shown}{_details('Statistics: checks, p-values, confidence intervals, ids and every table', stats, 'stats')}</section>"
        )
    meta = (f'workspace <code>{_e(report.get("workspace"))}</code> · generated {_e(report.get("generated_at"))}'
            f' · live snapshot {_sid(live.get("snapshot_id"))} (recipe {_sid(live.get("recipe_hash"))}) vs baseline {_sid(base.get("snapshot_id"))}'
            f' (recipe {_sid(base.get("recipe_hash"))}; {_e(report.get("baseline_rule"))})'
            f'{" · since " + _e(report["since"]) if report.get("since") else ""}{" · identifiers redacted" if report.get("redacted") else ""}')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>indexops drift report — {_e(report.get('workspace'))}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>Drift report {_badge(report["verdict"])}</h1><p class="overall" id="overall">{_e(summ.get("overall", ""))}</p>'
        f'<div class="muted">{meta}</div><nav>{nav}</nav></header><main>'
        f'<section id="glance" class="glance"><ul class="glance">{glance}</ul>{trend}</section>{"".join(secs)}'
        '<p class="muted">ok: within thresholds · warn: worth a look · alert: a test fired at its alpha or a rate passed its alert threshold · '
        "n/a: not enough data (the reason says why). Figures are in drift-report.json beside this file.</p></main></body></html>\n"
    )


def _md(s: Any) -> str:
    return str("" if s is None else s).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def headline_markdown(report: dict[str, Any], html_path: str | None = None) -> str:
    """Markdown with the overall and per-section verdicts (for the Prefect artifact)."""
    live, base = report.get("live") or {}, report.get("baseline") or {}
    from indexops.drift.summary import summarize

    summ = report.get("summary") or summarize(report)
    lines = [
        f"# Drift report: **{report['verdict'].upper()}**",
        "",
        _md(summ.get("overall")),
        "",
        *[f"- **{_md(s['title'])}** ({_md(s['verdict'])}): {_md(summ.get('sections', {}).get(s['id'], ''))}" for s in report["sections"]],
        "",
        f"live snapshot `{_md(str(live.get('snapshot_id') or '-')[:16])}` vs baseline `{_md(str(base.get('snapshot_id') or '-')[:16])}` "
        f"({_md(report.get('baseline_rule'))}); generated {_md(report.get('generated_at'))}",
        "",
        "| section | verdict | why |",
        "|---|---|---|",
    ]
    for s in report["sections"]:
        lines.append(f"| {_md(s['title'])} | **{_md(s['verdict'])}** | {_md(s['reason'])[:400]} |")
    if html_path:
        lines += ["", f"Full report: `{_md(html_path)}`"]
    return "\n".join(lines) + "\n"
