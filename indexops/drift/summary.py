"""Plain-language summary of a drift report: one overall sentence and one or two sentences per
section, with the numbers that matter and what to do.

Every sentence is made from the report's own figures (checks, tables) and never claims more than
its check's verdict: a change is called *significant* only when the check alerted (for retrieval:
a drop past `regression.fail_drop` whose confidence interval lies below zero; for the two-sample
tests: p below `drift.alpha`); a warning is "worth a look", never "significant".
"""

from __future__ import annotations

from typing import Any

_FLAGGED = ("warn", "alert")


def _checks(s: dict[str, Any]) -> list[dict[str, Any]]:
    return list(s.get("checks") or [])


def _find(s: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    return next((c for c in _checks(s) if str(c.get("name", "")).startswith(prefix)), None)


def _n(x: Any) -> str:
    return "–" if x is None else f"{x:.2f}"


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 or x == 0 else f"{x:.1%}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _queries(n: int) -> str:
    return f"{n} labeled {'query' if n == 1 else 'queries'}"


def _not_measured(s: dict[str, Any]) -> str:
    return f"Not measured: {s.get('reason') or 'no data'}."


def _severity(v: str) -> int:
    return {"alert": 3, "warn": 2, "ok": 1}.get(v, 0)


def retrieval_sentence(s: dict[str, Any]) -> str:
    """The headline metric (the worst verdict, then the largest drop), its verdict and the regressions."""
    checks = [c for c in _checks(s) if c.get("verdict") != "n/a" and c.get("statistic") is not None]
    if not checks:
        return _not_measured(s)
    head = sorted(checks, key=lambda c: (-_severity(c["verdict"]), c["statistic"], c["name"]))[0]
    ex = head.get("extra") or {}
    delta, n = float(head["statistic"]), head.get("n_b") or head.get("n_a") or 0
    moved = f"{head['name']} {_n(ex.get('baseline'))} → {_n(ex.get('latest'))} on {_queries(int(n))}"
    if head["verdict"] == "alert":
        what = "a significant drop" if delta < 0 else "flagged"
    elif head["verdict"] == "warn":
        what = f"a drop of {abs(delta):.2f} worth a look (not an alert: the change may be noise or small)"
    elif delta < 0:
        what = "within the regression thresholds"
    else:
        what = "no drop" if delta == 0 else "up, no regression"
    others = sum(1 for c in checks if c is not head and c["verdict"] in _FLAGGED)
    out = f"{moved}, {what}" + (f"; {_plural(others, 'other metric')} flagged" if others else "") + "."
    lost = int((s.get("tables") or {}).get("regressions_total") or 0)
    if lost and head["verdict"] in _FLAGGED:
        out += f" {_queries(lost)} scored lower than at the baseline — see the per-query table below before promoting."
    elif head["verdict"] == "ok" and not others:
        out += " Nothing to do."
    return out


def corpus_sentence(s: dict[str, Any]) -> str:
    """Documents added / updated / deleted, the quarantine rate, the vocabulary shift, stale feeds."""
    t = s.get("tables") or {}
    sb = t.get("since_baseline")
    if not sb:
        return _not_measured(s)
    parts = [f"{sb.get('added', 0)} documents added, {sb.get('updated', 0)} updated and {sb.get('deleted', 0)} deleted since the baseline snapshot"]
    deleted = _find(s, "deleted since baseline")
    if deleted and deleted["verdict"] in _FLAGGED:
        parts[0] += f" ({_pct(float(deleted['statistic']))} of the baseline's documents deleted — {deleted['verdict']})"
    q = _find(s, "quarantine rate")
    if q and q.get("statistic") is not None:
        parts.append(f"{_pct(float(q['statistic']))} of received records quarantined" + (f" ({q['verdict']})" if q["verdict"] in _FLAGGED else ""))
    vocab = _find(s, "vocabulary")
    rising = [r["term"] for r in (t.get("rising_terms") or [])[:3] if r.get("term")]
    if vocab and vocab["verdict"] == "alert" and rising:
        parts.append("the vocabulary shifted significantly towards " + ", ".join(rising))
    elif vocab and vocab["verdict"] == "warn" and rising:
        parts.append("the vocabulary may be shifting towards " + ", ".join(rising) + " (worth a look, not significant)")
    elif vocab and vocab["verdict"] == "ok":
        parts.append("no significant vocabulary shift")
    stale = [c for c in _checks(s) if str(c.get("name", "")).startswith("freshness") and c["verdict"] in _FLAGGED]
    out = "; ".join(parts) + "."
    if stale:
        out += " Stale: " + ", ".join(f"{c['name'].removeprefix('freshness ')} last ingested {float(c['statistic']):.0f} h ago" for c in stale) + "."
    return out


def _two_sample(c: dict[str, Any] | None, subject: str, differ: str) -> str | None:
    if c is None or c["verdict"] == "n/a":
        return None
    auc = next((x for x in [c.get("statistic")] if "AUC" in c.get("name", "")), None)
    p = float(c["p_value"])
    ptxt = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    if c["verdict"] == "alert":
        return f"{subject} {differ} (significant, {ptxt})"
    if c["verdict"] == "warn":
        return f"{subject} may differ (worth a look, not significant: {ptxt})"
    return f"no significant difference for {subject.lower()}" + (f" (AUC {auc:.2f})" if auc is not None else "")


def embedding_sentence(s: dict[str, Any]) -> str:
    """New chunks vs the baseline's, production vs labeled queries: the worse of MMD and classifier."""
    def worst(prefix: str) -> dict[str, Any] | None:
        cs = [c for c in _checks(s) if str(c.get("name", "")).startswith(prefix) and c["verdict"] != "n/a" and c.get("p_value") is not None]
        return sorted(cs, key=lambda c: (-_severity(c["verdict"]), c["p_value"]))[0] if cs else None

    parts = [p for p in (_two_sample(worst("chunks:"), "new chunks", "sit elsewhere in embedding space than the baseline's"),
                         _two_sample(worst("queries:"), "production queries", "differ from the labeled queries")) if p]
    if not parts:
        return _not_measured(s)
    out = "; ".join(parts) + "."
    out = out[0].upper() + out[1:]
    if s.get("verdict") == "alert":
        out += " Read the farthest new chunks below: a new domain may need labeled queries of its own."
    return out


def coverage_sentence(s: dict[str, Any]) -> str:
    """The uncovered share and, when flagged, which topics to label."""
    c = _find(s, "coverage")
    if c is None or c["verdict"] == "n/a" or c.get("statistic") is None:
        return _not_measured(s)
    share, n = float(c["statistic"]), int(c.get("n_b") or 0)
    thr = (c.get("extra") or {}).get("threshold")
    out = f"{_pct(share)} of {n} recent production queries have no close labeled query" + (f" (cosine < {thr})" if thr is not None else "")
    topics = [t["topic"] for t in ((s.get("tables") or {}).get("uncovered_topics") or [])][:3]
    if c["verdict"] in _FLAGGED:
        out += ": add labels for the topics listed" + (" — " + "; ".join(topics) if topics else "") + "."
    else:
        out += ": the labeled set covers what users ask."
    return out


SENTENCES = {"retrieval": retrieval_sentence, "corpus": corpus_sentence, "embedding": embedding_sentence, "coverage": coverage_sentence}


def overall_sentence(report: dict[str, Any]) -> str:
    secs = report.get("sections") or []
    flagged = [s for s in secs if s.get("verdict") in _FLAGGED]
    na = [s for s in secs if s.get("verdict") == "n/a"]
    if flagged:
        flagged.sort(key=lambda s: -_severity(s["verdict"]))
        out = f"{len(flagged)} of {len(secs)} sections need a look: " + ", ".join(f"{s['title'].lower()} ({s['verdict']})" for s in flagged) + "."
    else:
        out = "Nothing that matters changed: every measured section is within its thresholds."
    if na:
        out += f" Not measured: {', '.join(s['title'].lower() for s in na)}."
    return out


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """`{"overall": str, "sections": {section id: str}}` from the report's figures."""
    return {"overall": overall_sentence(report),
            "sections": {s["id"]: SENTENCES[s["id"]](s) if s["id"] in SENTENCES else s.get("reason", "") for s in report.get("sections") or []}}
