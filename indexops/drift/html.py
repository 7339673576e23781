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
nav a{margin-right:14px}
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


def _plot_series(series: dict[str, list[dict[str, Any]]]) -> str:
    metrics = list(dict.fromkeys(m for runs in series.values() for e in runs for m in e["metrics"]))
    if not metrics or not any(len(r) for r in series.values()):
        return ""
    n = len(metrics)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    f = _fig(6.4 if cols > 1 else 4.2, 2.6 * rows)
    for i, m in enumerate(metrics):
        ax = f.add_subplot(rows, cols, i + 1)
        for r, runs in sorted(series.items()):
            ys = [e["metrics"].get(m) for e in runs]
            ax.plot(range(1, len(ys) + 1), [np.nan if y is None else y for y in ys], marker="o", label=r)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("eval run", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        if i == 0:
            ax.legend(fontsize=7)
    return _png(f, "metrics per retriever across eval runs (oldest first)")


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
    ax.set_xticks(x, [str(i + 1) for i in x])
    ax.set_xlabel("snapshot (oldest first)", fontsize=8)
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


def _body(s: dict[str, Any]) -> str:
    f, t = s.get("figures", {}), s.get("tables", {})
    parts: list[str] = []
    sid = s["id"]
    if sid == "retrieval":
        parts.append(_plot_series(f.get("series", {})) + _plot_deltas(t.get("latest_vs_baseline", [])))
        parts.append("<h3>Latest versus baseline</h3>" + _table(t.get("latest_vs_baseline", [])))
        total = t.get("regressions_total", 0)
        parts.append(f"<h3>Per-query regressions ({_e(total)} queries lost on a compared metric; worst first)</h3>"
                     + _table(t.get("regressions", []), verdict_col=None))
    elif sid == "corpus":
        cl = f.get("chunk_lengths", {})
        age = f.get("age_days", {})
        parts.append(_plot_changes(t.get("per_snapshot", []))
                     + _plot_hist2(cl.get("baseline", []), cl.get("new", []), "baseline", "new", "chunk length (characters)", "chunk-length distribution, baseline vs new")
                     + _plot_terms(t.get("rising_terms", []), t.get("falling_terms", []))
                     + _plot_ages(age.get("days", [])))
        sb = t.get("since_baseline", {})
        parts.append("<h3>Since the baseline</h3>" + _table([sb], verdict_col=None) if sb else "")
        parts.append("<h3>Per snapshot</h3>" + _table(t.get("per_snapshot", []),
                                                      ["created_at", "snapshot_id", "feed", "received", "added", "updated", "deleted",
                                                       "duplicates", "quarantined", "duplicate_rate", "quarantine_rate", "counts_from"]))
        parts.append("<h3>Rising terms</h3>" + _table(t.get("rising_terms", []), verdict_col=None))
        parts.append("<h3>Falling terms</h3>" + _table(t.get("falling_terms", []), verdict_col=None))
        parts.append("<h3>Freshness</h3>" + _table(t.get("freshness", [])))
        parts.append("<h3>Document age (days)</h3>" + _table([{k: v for k, v in age.items() if k != "days"}], verdict_col=None))
    elif sid == "embedding":
        parts.append(_plot_projection(f.get("chunks_projection", {}), "baseline chunks", "new chunks", "2-D PCA projection of chunk embeddings")
                     + _plot_projection(f.get("queries_projection", {}), "labeled queries", "production queries", "2-D PCA projection of query embeddings"))
        if "farthest_new_chunks" in t:
            parts.append("<h3>New chunks farthest from the baseline</h3>" + _table(t["farthest_new_chunks"], verdict_col=None))
    elif sid == "coverage":
        parts.append(_plot_coverage(f.get("nearest_similarity", []), f.get("threshold", 0.0)))
        if "farthest_queries" in t:
            parts.append("<h3>Production queries farthest from the labeled set</h3>" + _table(t["farthest_queries"], verdict_col=None))
    return "".join(parts)


def render_html(report: dict[str, Any]) -> str:
    """The whole report as one HTML document: no script, no external resource."""
    live, base = report.get("live") or {}, report.get("baseline") or {}
    nav = "".join(f'<a href="#sec-{_e(s["id"])}">{i}. {_e(s["title"])}</a>' for i, s in enumerate(report["sections"], 1))
    secs = []
    for i, s in enumerate(report["sections"], 1):
        notes = "".join(f'<p class="muted">{_e(n)}</p>' for n in s.get("notes", []))
        secs.append(
            f'<section id="sec-{_e(s["id"])}" class="section {_lv(s["verdict"])}" data-section="{_e(s["id"])}" data-verdict="{_e(s["verdict"])}">'
            f'<h2>{i}. {_e(s["title"])} {_badge(s["verdict"])}</h2><p class="reason">{_e(s["reason"])}</p>'
            f"{_compares(s.get('compares', []))}<h3>Checks</h3>{_checks(s.get('checks', []))}{_body(s)}{notes}</section>"
        )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>indexops drift report — {_e(report.get('workspace'))}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>Drift report {_badge(report["verdict"])}</h1>'
        f'<div class="muted">workspace <code>{_e(report.get("workspace"))}</code> · generated {_e(report.get("generated_at"))}'
        f' · live snapshot {_sid(live.get("snapshot_id"))} (recipe {_sid(live.get("recipe_hash"))}) vs baseline {_sid(base.get("snapshot_id"))}'
        f' (recipe {_sid(base.get("recipe_hash"))}; {_e(report.get("baseline_rule"))})'
        f'{" · since " + _e(report["since"]) if report.get("since") else ""}{" · identifiers redacted" if report.get("redacted") else ""}</div>'
        f"<nav>{nav}</nav></header><main>{''.join(secs)}"
        '<p class="muted">ok: within thresholds · warn: worth a look · alert: a test fired at its alpha or a rate passed its alert threshold · '
        "n/a: not enough data (the reason says why). Figures are in drift-report.json beside this file.</p></main></body></html>\n"
    )


def _md(s: Any) -> str:
    return str("" if s is None else s).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def headline_markdown(report: dict[str, Any], html_path: str | None = None) -> str:
    """Markdown with the overall and per-section verdicts (for the Prefect artifact)."""
    live, base = report.get("live") or {}, report.get("baseline") or {}
    lines = [
        f"# Drift report: **{report['verdict'].upper()}**",
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
