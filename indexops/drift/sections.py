"""What every section of the drift report is made of: its verdict from its checks, the snapshots
it compares, and the rounding and time parsing the figures share."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from indexops.drift import statistics as D
from indexops.index.context import recipe_hash

SECTIONS = {
    "retrieval": "Retrieval quality over time",
    "corpus": "Corpus change",
    "embedding": "Embedding drift",
    "coverage": "Coverage of production queries",
}


def parse_since(value: str | datetime | None) -> datetime | None:
    """An ISO date or datetime (naive = UTC).

    Raises:
        ValueError: not an ISO 8601 date.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--since must be an ISO date such as 2026-11-01 or 2026-11-01T12:00:00Z, not {value!r}") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _ts(s: Any) -> datetime | None:
    if s is None:
        return None
    if isinstance(s, (int, float)) and not isinstance(s, bool):
        return datetime.fromtimestamp(float(s), timezone.utc) if math.isfinite(s) else None
    try:
        return parse_since(str(s))
    except ValueError:
        return None


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), nd)


def _snap_ref(s: dict[str, Any] | None) -> dict[str, Any] | None:
    if s is None:
        return None
    rec = s.get("recipe") or {}
    emb, ch = rec.get("embedding", {}), rec.get("chunker", {})
    return {
        "snapshot_id": s["snapshot_id"], "collection": s.get("collection"), "created_at": s.get("created_at"),
        "recipe_hash": recipe_hash(rec) if rec else None, "documents": s.get("documents"), "chunks": s.get("chunks"),
        "recipe": f"{emb.get('model', '?')} ({str(emb.get('fingerprint', ''))[:12]}), {ch.get('strategy', '?')} "
                  f"{ch.get('max_tokens', '?')}/{ch.get('overlap_tokens', '?')} tokens",
    }


def _section(sid: str, checks: list[D.DriftTest], compares: list[dict[str, Any]], **parts: Any) -> dict[str, Any]:
    verdict = D.Level.worst([c.verdict for c in checks])
    flagged = [c for c in checks if c.verdict is verdict and verdict in (D.Level.WARN, D.Level.ALERT)]
    if flagged:
        reason = "; ".join(f"{c.name}: {c.reason}" for c in flagged[:3])
    elif verdict is D.Level.OK:
        reason = "every check within its thresholds"
    else:
        reason = next((c.reason for c in checks), "no data")
    return {"id": sid, "title": SECTIONS[sid], "verdict": verdict.value, "reason": reason, "compares": compares,
            "checks": [c.to_dict() for c in checks], "figures": parts.get("figures", {}), "tables": parts.get("tables", {}),
            "notes": parts.get("notes", [])}
