"""The markdown a data engineer reads after an ingest run."""

from __future__ import annotations

from typing import Any

_ROWS = [
    ("received", "records received"),
    ("upserted", "documents (re)indexed"),
    ("deleted", "documents deleted"),
    ("unchanged", "unchanged (skipped)"),
    ("stale", "stale (older than stored, skipped)"),
    ("delete_unknown", "deletes of unknown ids"),
    ("exact_duplicates", "exact duplicates"),
    ("near_duplicates", "near duplicates"),
    ("chunk_duplicates", "repeated chunks dropped"),
    ("promoted", "duplicates promoted"),
    ("quarantined", "quarantined"),
    ("chunks_embedded", "chunks embedded"),
    ("chunks_deleted", "chunks deleted"),
]


_KEY_ROWS = [
    ("listed", "listed"),
    ("fetched", "fetched (new or changed fingerprint)"),
    ("unchanged", "skipped unchanged (fingerprint as applied)"),
    ("deleted", "deleted (no longer listed)"),
    ("unreadable", "unreadable (quarantined)"),
]


def _esc(s: str) -> str:
    return s.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def ingest_markdown(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    snap = summary.get("snapshot") or {}
    lines = [
        f"# Ingest of `{_esc(summary['feed'])}`",
        "",
        f"**Snapshot** `{snap.get('snapshot_id', '?')}`" + (" (unchanged)" if snap and not snap.get("new") else ""),
        f"— {snap.get('documents', 0)} documents, {snap.get('chunks', 0)} chunks, collection `{snap.get('collection', '?')}`",
        "",
        "| what | count |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {c.get(k, 0)} |" for k, label in _ROWS]
    keys = summary.get("keys")
    if keys:  # a keyed source (document tree, bucket, table): what its listing said and what was read
        lines += ["", f"Source `{_esc(str(summary.get('source_kind', '')))}`: what was listed and read", "",
                  "| keys | count |", "|---|---:|"]
        lines += [f"| {label} | {keys.get(k, 0)} |" for k, label in _KEY_ROWS]
    lines += ["", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in summary.get("timings_s", {}).items()]
    if summary.get("files"):
        lines += ["", "Files applied: " + ", ".join(f"`{_esc(f)}`" for f in summary["files"])]
    if summary.get("changed_after_apply"):
        lines += ["", "**Warning:** already-applied files changed on disk and were not re-applied: "
                  + ", ".join(f"`{_esc(f)}`" for f in summary["changed_after_apply"])]
    return "\n".join(lines) + "\n"
