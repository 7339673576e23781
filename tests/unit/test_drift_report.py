"""The drift report built from a real workspace (ingest + eval with the hashing embedder)."""

from __future__ import annotations

import json

import pytest

from indexops.drift.html import headline_markdown
from indexops.drift.report import SECTIONS, WorkspaceNotFound, build_drift_report, write_drift_report
from indexops.settings import load_settings
from tests.drift_helpers import EMAIL, IMG, PHONE, SCRIPT, build_workspace


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("drift"))


def _report(planted, tmp_path, **kw):
    rep = build_drift_report(planted["workspace"], load_settings(planted["config"]), query_log=planted["query_log"], **kw)
    paths = write_drift_report(rep, tmp_path / "out")
    return rep, paths["html"].read_text(), paths["json"].read_text(), headline_markdown(rep, str(paths["html"]))


def test_every_section_alerts_on_the_planted_drift(planted, tmp_path):
    rep, html, js, _ = _report(planted, tmp_path)
    data = json.loads(js)
    assert data == json.loads(json.dumps(rep))
    secs = {s["id"]: s for s in data["sections"]}
    assert list(secs) == list(SECTIONS)
    for s in secs.values():
        assert s["verdict"] in ("ok", "warn", "alert", "n/a") and s["checks"] and s["reason"]
        assert s["compares"], f"{s['id']} does not say what it compares"
        assert f'data-section="{s["id"]}"' in html
    by = {sid: {c["name"]: c for c in s["checks"]} for sid, s in secs.items()}
    assert secs["retrieval"]["verdict"] == "alert" and by["retrieval"]["sparse recall@10"]["verdict"] == "alert"
    assert secs["retrieval"]["tables"]["regressions"], "the per-query regressions table is empty"
    assert by["corpus"]["vocabulary (JSD, document permutation)"]["verdict"] == "alert"
    assert by["corpus"]["deleted since baseline"]["verdict"] == "alert"
    assert by["embedding"]["chunks: MMD² (RBF)"]["verdict"] == "alert"
    assert secs["coverage"]["verdict"] == "alert"
    assert by["corpus"]["quarantine rate"]["verdict"] == "ok"
    # the sections name the snapshots they compare: the pinned eval's snapshot vs the live one
    snap = secs["corpus"]["compares"][0]
    assert snap["baseline"]["snapshot_id"] != snap["current"]["snapshot_id"]
    assert snap["baseline"]["snapshot_id"] == secs["retrieval"]["compares"][0]["baseline"]["snapshot_id"]
    assert snap["current"]["recipe_hash"] and data["live"]["snapshot_id"] == snap["current"]["snapshot_id"]
    assert data["live"]["snapshot_id"][:16] in html
    assert "<img" in html and "data:image/png;base64," in html and "http://" not in html and "https://" not in html


def test_texts_are_escaped_and_identifiers_redacted(planted, tmp_path):
    raw, html_raw, js_raw, md_raw = _report(planted, tmp_path / "raw", redact=False)
    # unredacted the planted texts do reach the report (so the checks below can fail)
    assert EMAIL in js_raw and PHONE in js_raw and SCRIPT in js_raw and EMAIL in md_raw
    assert SCRIPT not in html_raw and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html_raw
    assert IMG not in html_raw and "<script" not in html_raw.lower()
    rep, html, js, md = _report(planted, tmp_path / "red", redact=True)
    for text in (html, js, md):
        for secret in (EMAIL, "jane.doe", PHONE, "7946"):
            assert secret not in text
    assert "[email]" in js and "[phone]" in js


def test_one_eval_run_and_no_query_log_say_so(tmp_path):
    from indexops.eval.evaluate import evaluate_snapshot
    from indexops.eval.queries import load_query_set
    from indexops.index.context import open_index
    from indexops.ingest.driver import ingest_path
    from tests.conftest import write_jsonl
    from tests.drift_helpers import QRELS, QUERIES, write_config

    cfg = write_config(tmp_path)
    s = load_settings(cfg)
    write_jsonl(tmp_path / "feed" / "000001.jsonl", [{"id": f"d{i}", "text": f"heart blood pressure note {i}"} for i in range(5)])
    ctx = open_index(tmp_path / "ws", s)
    ingest_path(ctx, tmp_path / "feed", "delta")
    evaluate_snapshot(ctx, load_query_set(QUERIES, QRELS), "sparse", s.eval.metrics)
    ctx.close()
    rep = build_drift_report(tmp_path / "ws", s)
    secs = {x["id"]: x for x in rep["sections"]}
    assert secs["retrieval"]["verdict"] == "n/a" and "only one eval run" in secs["retrieval"]["reason"]
    assert secs["embedding"]["verdict"] == "n/a"
    assert secs["coverage"]["verdict"] == "n/a" and "no query log" in secs["coverage"]["reason"]
    assert "n/a" in write_drift_report(rep, tmp_path / "out")["html"].read_text().lower()
    with pytest.raises(WorkspaceNotFound):
        build_drift_report(tmp_path / "missing", s)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe@example.com now", "mail [email] now"),
        ("call +44 20 7946 0958 or (555) 123-4567.", "call [phone] or [phone]."),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN [iban] ok"),
        ("card 4111 1111 1111 1111, not 4111 1111 1111 1112", "card [card], not 4111 1111 1111 1112"),
        ("from 192.168.1.20 and fe80::1ff:fe23:4567:890a", "from [ip] and [ip]"),
        # numbers that are not identifiers stay
        ("600 requests per minute, HTTP 429, on 2026-11-01 at 10:30:15, version 1.2.3", None),
    ],
)
def test_redact_patterns(text, expected):
    from indexops.drift.redact import Redactor, redact

    assert redact(text) == (text if expected is None else expected)
    assert Redactor(False)(text) == text and Redactor(True)(None) == ""
