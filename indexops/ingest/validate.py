"""Batch validation: a Great Expectations suite from configs/ plus the pydantic record model.

GE checks the batch as a table (nulls, allowed ops, lengths) and names the expectation a row
failed; pydantic then checks each remaining row's types. Bad rows become quarantine entries;
the batch is rejected as a whole only when their share passes the configured threshold.

The suite file is always a GE suite. Importing GE costs seconds per process, which a 50-record
delta should not pay, so the expectation types below also have a native evaluator that gives
the same unexpected rows and the same reasons (held to GE by tests/unit/test_validate_parity.py);
`validation.engine: auto` uses it when every expectation of the suite is one of them, GE otherwise.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from indexops.models import FeedRecord, Quarantined, SourceRecord


@dataclass
class ValidationResult:
    good: list[FeedRecord] = field(default_factory=list)
    bad: list[Quarantined] = field(default_factory=list)
    total: int = 0

    @property
    def bad_fraction(self) -> float:
        return len(self.bad) / self.total if self.total else 0.0

    def top_reasons(self, n: int = 3) -> list[tuple[str, int]]:
        return Counter(q.reason[:120] for q in self.bad).most_common(n)


class BatchRejected(Exception):
    """The bad share of a batch passed the threshold: nothing of it lands."""

    def __init__(self, feed: str, file: str, result: ValidationResult, threshold: float) -> None:
        self.feed, self.file, self.result, self.threshold = feed, file, result, threshold
        reasons = "; ".join(f"{r} ({n})" for r, n in result.top_reasons())
        super().__init__(
            f"feed {feed!r}, file {file!r}: {len(result.bad)} of {result.total} records invalid "
            f"({result.bad_fraction:.1%} > threshold {threshold:.1%}); nothing of this batch was applied and the "
            f"cursor stays before it. Top reasons: {reasons}. Fix the file and re-run; "
            f"`indexops quarantine list` shows every rejected line."
        )


@lru_cache(maxsize=4)
def _validator(suite_path: str, mtime: float) -> tuple[Any, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    spec = json.loads(Path(suite_path).read_text())
    suite = gx.ExpectationSuite(name=spec.get("name", "feed_record"), expectations=spec["expectations"], meta=spec.get("meta", {}))
    ctx = gx.get_context(mode="ephemeral")
    try:  # GE's tqdm bars would spam task logs
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    ds = ctx.data_sources.add_pandas("indexops_feed")
    asset = ds.add_dataframe_asset("batch")
    bd = asset.add_batch_definition_whole_dataframe("whole_batch")
    return bd, suite


def load_suite(path: str | Path) -> tuple[Any, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Great Expectations suite not found: {p}")
    return _validator(str(p.resolve()), p.stat().st_mtime)


def _op(v: Any) -> Any:
    """Missing op means upsert; an unhashable one (a list, an object) is simply not an allowed op
    (GE's isin would crash the whole batch on it)."""
    if v is None:
        return "upsert"
    return v if isinstance(v, (str, int, float, bool)) else json.dumps(v, default=str)


def _frame_values(records: list[SourceRecord]) -> dict[str, list[Any]]:
    def s(v: Any) -> Any:
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return str(v)
        return v if isinstance(v, str) else None

    return {
        "id": [s(r.raw.get("id")) for r in records],
        "op": [_op(r.raw.get("op")) for r in records],
        "title": [s(r.raw.get("title")) for r in records],
        "text": [r.raw.get("text") if isinstance(r.raw.get("text"), str) else None for r in records],
    }


def _frame(records: list[SourceRecord]) -> Any:
    import pandas as pd

    return pd.DataFrame(_frame_values(records), dtype=object)


def _describe(exp: Any) -> str:
    kw = {k: v for k, v in exp.kwargs.items() if k not in ("column", "batch_id")}
    col = exp.kwargs.get("column", "")
    if isinstance(kw.get("value_set"), list):
        kw["value_set"] = "|".join(map(str, kw["value_set"]))
    extra = ", ".join(f"{k}={v}" for k, v in kw.items())
    return f"{exp.type}({col}{', ' + extra if extra else ''})"


def _spec(suite_path: str | Path) -> dict[str, Any]:
    p = Path(suite_path)
    if not p.is_file():
        raise FileNotFoundError(f"Great Expectations suite not found: {p}")
    return _read_spec(str(p.resolve()), p.stat().st_mtime)


@lru_cache(maxsize=4)
def _read_spec(path: str, mtime: float) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _in_set(v: Any, allowed: list[Any]) -> bool:
    return any(v == a for a in allowed)


NATIVE_EXPECTATIONS = {
    # GE column-map semantics: nulls are skipped by every check except not_be_null
    "expect_column_values_to_not_be_null": lambda v, kw: not _is_null(v),
    "expect_column_values_to_be_null": lambda v, kw: _is_null(v),
    "expect_column_values_to_be_in_set": lambda v, kw: _is_null(v) or _in_set(v, kw["value_set"]),
    "expect_column_values_to_not_be_in_set": lambda v, kw: _is_null(v) or not _in_set(v, kw["value_set"]),
    "expect_column_value_lengths_to_be_between": lambda v, kw: _is_null(v) or (
        (kw.get("min_value") is None or len(v) >= kw["min_value"]) and (kw.get("max_value") is None or len(v) <= kw["max_value"])),
    "expect_column_value_lengths_to_equal": lambda v, kw: _is_null(v) or len(v) == kw["value"],
}
_NATIVE_KWARGS = {"column", "value_set", "min_value", "max_value", "value", "mostly", "meta", "notes"}


def native_supported(spec: dict[str, Any]) -> bool:
    """True when every expectation is one the native evaluator implements, with only kwargs it knows."""
    return all(e.get("type") in NATIVE_EXPECTATIONS and set(e.get("kwargs", {})) <= _NATIVE_KWARGS
               and not e.get("kwargs", {}).get("strict_min") and not e.get("kwargs", {}).get("strict_max")
               for e in spec.get("expectations", []))


def _describe_spec(e: dict[str, Any]) -> str:
    kw = {k: v for k, v in e.get("kwargs", {}).items() if k not in ("column", "batch_id", "meta", "notes")}
    col = e.get("kwargs", {}).get("column", "")
    if isinstance(kw.get("value_set"), list):
        kw["value_set"] = "|".join(map(str, kw["value_set"]))
    extra = ", ".join(f"{k}={v}" for k, v in kw.items())
    return f"{e['type']}({col}{', ' + extra if extra else ''})"


def _native_failures(records: list[SourceRecord], spec: dict[str, Any]) -> dict[int, list[str]]:
    cols = _frame_values(records)
    failed: dict[int, list[str]] = {}
    for e in spec.get("expectations", []):
        kw = e.get("kwargs", {})
        ok = NATIVE_EXPECTATIONS[e["type"]]
        values = cols.get(kw.get("column"))
        if values is None:
            raise RuntimeError(f"expectation {_describe_spec(e)} could not run: no column {kw.get('column')!r}")
        for i, v in enumerate(values):
            if not ok(v, kw):
                failed.setdefault(i, []).append(_describe_spec(e))
    return failed


def _ge_failures(records: list[SourceRecord], suite_path: str | Path) -> dict[int, list[str]]:
    failed: dict[int, list[str]] = {}
    bd, suite = load_suite(suite_path)
    batch = bd.get_batch(batch_parameters={"dataframe": _frame(records)})
    out = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": None})
    for er in out.results:
        if er.exception_info and er.exception_info.get("raised_exception"):
            raise RuntimeError(f"expectation {_describe(er.expectation_config)} could not run: {er.exception_info.get('exception_message')}")
        for idx in er.result.get("unexpected_index_list") or []:
            i = idx if isinstance(idx, int) else int(idx.get("index", -1)) if isinstance(idx, dict) else int(idx)
            failed.setdefault(i, []).append(_describe(er.expectation_config))
    # GE lists results in its own order; the suite's order is the reason order users read
    order = {_describe_spec(e): k for k, e in enumerate(_spec(suite_path).get("expectations", []))}
    return {i: sorted(v, key=lambda d: order.get(d, len(order))) for i, v in failed.items()}


def validate_records(records: list[SourceRecord], feed: str, suite_path: str | Path, max_text_chars: int,
                     engine: str = "auto") -> ValidationResult:
    """Validate one batch.

    Args:
        records: raw records with positions.
        feed: feed name for quarantine rows.
        suite_path: the GE suite JSON (configs/expectations/feed_record.json).
        max_text_chars: texts longer than this are quarantined.
        engine: `great_expectations`, `native`, or `auto` (native when the suite allows it).

    Returns:
        Good records (parsed) and quarantine entries; `total` counts both.
    """
    res = ValidationResult(total=len(records))
    if not records:
        return res
    spec = _spec(suite_path)
    if engine == "native" and not native_supported(spec):
        raise ValueError(f"validation.engine native cannot run {suite_path}: it has expectations only Great Expectations implements")
    use_native = engine == "native" or (engine == "auto" and native_supported(spec))
    failed = _native_failures(records, spec) if use_native else _ge_failures(records, suite_path)
    for i, r in enumerate(records):
        rid = r.raw.get("id")
        rid_s = str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None
        if i in failed:
            res.bad.append(Quarantined(feed=feed, file=r.file, line=r.line, record_id=rid_s, reason="expectation failed: " + "; ".join(failed[i]), excerpt=_excerpt(r.raw)))
            continue
        text = r.raw.get("text")
        if isinstance(text, str) and len(text) > max_text_chars:
            res.bad.append(Quarantined(feed=feed, file=r.file, line=r.line, record_id=rid_s, reason=f"text too long: {len(text)} chars > {max_text_chars}", excerpt=_excerpt(r.raw)))
            continue
        try:
            res.good.append(FeedRecord.model_validate(r.raw))
        except ValidationError as e:
            msg = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'record'}: {err['msg']}" for err in e.errors(include_url=False))
            res.bad.append(Quarantined(feed=feed, file=r.file, line=r.line, record_id=rid_s, reason=f"invalid record: {msg}", excerpt=_excerpt(r.raw)))
    return res


def _excerpt(raw: dict[str, Any]) -> str:
    try:
        s = json.dumps(raw, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):  # a circular or very deep value: name the keys only
        s = f"<record with keys {', '.join(sorted(map(str, raw))[:10])}>"
    return s[:200]
