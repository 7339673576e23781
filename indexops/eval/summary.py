"""Tables and markdown for evaluation and regression results."""

from __future__ import annotations

from typing import Any


def eval_rows(outcomes: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for o in outcomes:
        row = {"retriever": o.retriever, "queries": o.queries}
        row.update({k: round(v, 4) for k, v in o.metrics.items()})
        row.update({"seconds": round(o.seconds, 2), "snapshot": o.snapshot_id[:12], "query_set": o.query_set_hash[:12]})
        rows.append(row)
    return rows


def gate_markdown(reports: list[Any], title: str) -> str:
    lines = [f"# {title}", ""]
    for g in reports:
        lines += [
            f"## {g.retriever}: **{g.status.upper()}**",
            "",
            f"baseline snapshot `{g.baseline_snapshot[:16]}` (eval `{g.baseline_eval[:12]}`) → candidate `{g.candidate_snapshot[:16]}` (eval `{g.candidate_eval[:12]}`)",
            "",
            "| metric | baseline | candidate | Δ | 95% CI | p | win/tie/loss | verdict |",
            "|---|---:|---:|---:|---|---:|---|---|",
        ]
        for m, v in g.verdict["metrics"].items():
            c = v["comparison"]
            lines.append(
                f"| {m} | {c['mean_baseline']:.4f} | {c['mean_candidate']:.4f} | {c['mean_delta']:+.4f} | "
                f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p_value']:.4f} | {c['wins']}/{c['ties']}/{c['losses']} | {v['status']} |"
            )
        if g.vendor_drift:
            lines += ["", "**Vendor drift:** the embedding model's weights changed since the baseline."]
        elif g.recipe_changes:
            lines += ["", "Recipe changed: " + ", ".join(g.recipe_changes)]
        if g.lost:
            lines += ["", f"Queries that lost relevant documents from their top-k ({len(g.lost)}):", "", "| query | lost documents |", "|---|---|"]
            for q, docs in list(g.lost.items())[:50]:
                lines.append(f"| {q} | {', '.join(docs)} |")
        lines.append("")
    return "\n".join(lines)
