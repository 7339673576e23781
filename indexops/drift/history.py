"""Report history: every report is kept in `<out>/<UTC timestamp>/` beside the latest one at
`<out>/drift-report.html|json`, and `<out>/index.html` lists them all (date, snapshots, the
verdicts, the summary), newest first, each linking to its report.

The index is rebuilt from the archived `drift-report.json` files each time, so it never drifts
from what is on disk; a directory whose JSON is missing, corrupt or not a drift report is listed
as skipped and otherwise ignored.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

INDEX_NAME = "index.html"
_SCHEMA_PREFIX = "indexops.drift-report/"
_SECTION_IDS = ("retrieval", "corpus", "embedding", "coverage")


def archive_dir(out: Path, generated_at: str | None) -> Path:
    """A new directory `<out>/<YYYY-MM-DDTHH-MM-SSZ>` (suffixed `-2`, `-3` … when taken)."""
    try:
        t = datetime.fromisoformat(str(generated_at).replace("Z", "+00:00"))
        t = (t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t).astimezone(timezone.utc)
    except ValueError:
        t = datetime.now(timezone.utc)
    base = t.strftime("%Y-%m-%dT%H-%M-%SZ")
    d, i = out / base, 1
    while d.exists():
        i += 1
        d = out / f"{base}-{i}"
    d.mkdir(parents=True)
    return d


def _entry(d: Path, json_name: str, html_name: str) -> dict[str, Any]:
    data = json.loads((d / json_name).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(_SCHEMA_PREFIX):
        raise ValueError("not a drift report")
    t = datetime.fromisoformat(str(data["generated_at"]).replace("Z", "+00:00"))
    t = t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t
    secs = {s.get("id"): s.get("verdict") for s in data.get("sections") or [] if isinstance(s, dict)}
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    return {"dir": d.name, "href": f"{d.name}/{html_name}", "generated_at": t, "verdict": str(data.get("verdict", "n/a")),
            "live": ((data.get("live") or {}).get("snapshot_id") or ""), "baseline": ((data.get("baseline") or {}).get("snapshot_id") or ""),
            "sections": {k: str(secs.get(k) or "n/a") for k in _SECTION_IDS}, "summary": str(summary.get("overall") or "")}


def list_reports(out: str | Path, json_name: str = "drift-report.json", html_name: str = "drift-report.html") -> tuple[list[dict[str, Any]], list[str]]:
    """Archived reports under `out`, newest first, and the names of the directories skipped."""
    out = Path(out)
    entries, skipped = [], []
    for d in sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []:
        if not (d / json_name).exists():
            continue  # not a report directory at all
        try:
            entries.append(_entry(d, json_name, html_name))
        except (OSError, ValueError, TypeError, KeyError, AttributeError, json.JSONDecodeError):
            skipped.append(d.name)
    entries.sort(key=lambda e: (e["generated_at"], e["dir"]), reverse=True)
    return entries, skipped


def render_index(entries: list[dict[str, Any]], skipped: list[str]) -> str:
    """The history page: no script, the report's CSS, every string escaped."""
    from indexops.drift.html import _CSS, _badge, _e, _sid

    rows = []
    for e in entries:
        cells = "".join(f"<td>{_badge(e['sections'][k])}</td>" for k in _SECTION_IDS)
        rows.append(f'<tr data-dir="{_e(e["dir"])}"><td><a href="{_e(e["href"])}">{_e(e["generated_at"].strftime("%Y-%m-%d %H:%M:%S UTC"))}</a></td>'
                    f"<td>{_sid(e['live'])}</td><td>{_sid(e['baseline'])}</td><td>{_badge(e['verdict'])}</td>{cells}<td>{_e(e['summary'])}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("generated", "live snapshot", "baseline", "overall", *_SECTION_IDS, "summary"))
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>" if rows else '<p class="muted">no report yet</p>'
    skip = f'<p class="muted">skipped (unreadable or not a drift report): {_e(", ".join(skipped))}</p>' if skipped else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>indexops drift reports</title><style>{_CSS}</style></head><body>"
        f'<header><h1>Drift reports</h1><div class="muted">{len(entries)} report(s), newest first · '
        f'<a href="drift-report.html">latest</a></div></header><main>{table}{skip}</main></body></html>\n'
    )


def write_index(out: str | Path, json_name: str = "drift-report.json", html_name: str = "drift-report.html") -> Path:
    """Rebuild `<out>/index.html` from the archived reports; returns its path."""
    out = Path(out)
    entries, skipped = list_reports(out, json_name, html_name)
    p = out / INDEX_NAME
    p.write_text(render_index(entries, skipped), encoding="utf-8")
    return p.resolve()
