"""The report's plain-language layer, on hand-made report figures: summary sentences follow the
figures and never claim more than the checks, coverage topics come out by theme, and the history
index lists reports in date order past a corrupt or foreign file."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from indexops.drift.history import list_reports, write_index
from indexops.drift.summary import summarize
from indexops.drift.topics import uncovered_topics

pytestmark = pytest.mark.unit


def _check(name, verdict, statistic, p=None, n=57, **extra):
    return {"name": name, "verdict": verdict, "statistic": statistic, "p_value": p, "n_a": n, "n_b": n, "reason": "r", "extra": extra}


def _report(recall_verdict="alert", latest=0.74, vocab="alert", share=0.31):
    return {"schema": "indexops.drift-report/1", "generated_at": "2026-11-26T10:00:00+00:00", "verdict": "alert",
            "live": {"snapshot_id": "live123"}, "baseline": {"snapshot_id": "base456"}, "sections": [
                {"id": "retrieval", "title": "Retrieval quality over time", "verdict": recall_verdict, "reason": "r",
                 "checks": [_check("hybrid recall@10", recall_verdict, latest - 0.81, 0.001, baseline=0.81, latest=latest),
                            _check("hybrid ndcg@10", "ok", 0.0, 1.0, baseline=0.6, latest=0.6)],
                 "tables": {"regressions_total": 9}},
                {"id": "corpus", "title": "Corpus change", "verdict": vocab, "reason": "r",
                 "checks": [_check("quarantine rate", "ok", 0.03), _check("vocabulary (JSD, document permutation)", vocab, 0.2, 0.001)],
                 "tables": {"since_baseline": {"added": 412, "updated": 5, "deleted": 0},
                            "rising_terms": [{"term": "billing", "log_ratio": 2.0}, {"term": "invoice", "log_ratio": 1.5}]}},
                {"id": "embedding", "title": "Embedding drift", "verdict": "ok", "reason": "r",
                 "checks": [_check("chunks: MMD² (RBF)", "ok", 0.01, 0.4)]},
                {"id": "coverage", "title": "Coverage of production queries", "verdict": "alert" if share > 0.25 else "ok", "reason": "r",
                 "checks": [_check("coverage (nearest labeled query)", "alert" if share > 0.25 else "ok", share, None, 40, threshold=0.5)],
                 "tables": {"uncovered_topics": [{"topic": "refund, subscription"}, {"topic": "mobile, offline"}]}},
            ]}


def test_sentences_carry_the_figures_and_follow_them():
    s = summarize(_report())["sections"]
    assert s["retrieval"].startswith("hybrid recall@10 0.81 → 0.74 on 57 labeled queries, a significant drop")
    assert "9 labeled queries scored lower" in s["retrieval"]
    assert "412 documents added" in s["corpus"] and "3% of received records quarantined" in s["corpus"]
    assert "towards billing, invoice" in s["corpus"]
    assert s["coverage"].startswith("31% of 40 recent production queries have no close labeled query")
    assert "add labels for the topics listed — refund, subscription; mobile, offline" in s["coverage"]
    # change a figure, the sentence changes with it
    rep = _report(latest=0.62)
    rep["sections"][1]["tables"]["since_baseline"]["added"] = 7
    s2 = summarize(rep)["sections"]
    assert "0.81 → 0.62" in s2["retrieval"] and "7 documents added" in s2["corpus"] and "412" not in s2["corpus"]
    s3 = summarize(_report(share=0.05))["sections"]["coverage"]
    assert s3.startswith("5% of 40") and "add labels" not in s3


@pytest.mark.parametrize("verdict", ["ok", "warn"])
def test_no_sentence_claims_a_change_the_statistics_do_not_support(verdict):
    """The same 0.07 drop is 'significant' only when its check alerted."""
    rep = _report(recall_verdict=verdict, vocab=verdict)
    summ = summarize(rep)
    text = " ".join(summ["sections"].values()) + summ["overall"]
    assert "significant drop" not in text and "shifted significantly" not in text
    assert "0.81 → 0.74" in summ["sections"]["retrieval"]
    if verdict == "warn":
        assert "not an alert" in summ["sections"]["retrieval"] and "not significant" in summ["sections"]["corpus"]
    else:
        assert "within the regression thresholds" in summ["sections"]["retrieval"]
        assert "no significant vocabulary shift" in summ["sections"]["corpus"]
    assert "significant drop" in summarize(_report(recall_verdict="alert"))["sections"]["retrieval"]


def test_an_unmeasured_section_says_so():
    rep = _report()
    rep["sections"][0] = {"id": "retrieval", "title": "Retrieval quality over time", "verdict": "n/a",
                          "reason": "eval runs: no eval run in the ledger", "checks": [_check("eval runs", "n/a", None)]}
    summ = summarize(rep)
    assert summ["sections"]["retrieval"].startswith("Not measured: eval runs")
    assert "Not measured: retrieval quality over time" in summ["overall"]


ON_TOPIC = ["how do I reset my password", "reset password link expired", "enable two factor authentication", "export my table to csv",
            "api rate limit 429", "invite a new team member", "configure saml sso", "download my invoices"]
BILLING = ["refund for my cancelled subscription", "cancel subscription and refund", "refund charged twice on my subscription",
           "subscription refund policy for [email]"]
MOBILE = ["mobile app offline sync broken", "offline mode on the mobile app", "mobile app crashes when offline", "iphone mobile app offline"]


def test_two_off_topic_themes_come_out_as_two_named_topics():
    from indexops.embed.hashing import HashingEmbedder

    texts = [*ON_TOPIC[:3], *BILLING[:2], *ON_TOPIC[3:5], *MOBILE[:2], *BILLING[2:], *ON_TOPIC[5:], *MOBILE[2:]]
    covered = [t in ON_TOPIC for t in texts]
    vecs = np.asarray(HashingEmbedder(64).embed(texts))
    topics = uncovered_topics(texts, vecs, covered)
    assert len(topics) == 2
    by_terms = {frozenset(t["terms"]): t for t in topics}
    billing = next(t for t in topics if "refund" in t["terms"])
    mobile = next(t for t in topics if "mobile" in t["terms"])
    assert "subscription" in billing["terms"] and "offline" in mobile["terms"] and len(by_terms) == 2
    assert set(billing["examples"]) <= set(BILLING) and set(mobile["examples"]) <= set(MOBILE)
    assert billing["queries"] == 4 and len(billing["examples"]) == 3 and billing["share"] == pytest.approx(4 / len(texts), abs=1e-4)
    assert not any("email" in t["terms"] for t in topics)  # redaction placeholders never name a topic
    assert uncovered_topics(texts, vecs, [True] * len(texts)) == []


def _write(out, name, generated_at, verdict="ok"):
    d = out / name
    d.mkdir(parents=True)
    rep = _report()
    rep.update(generated_at=generated_at, verdict=verdict, summary={"overall": f"summary of {name}"})
    (d / "drift-report.json").write_text(json.dumps(rep))
    (d / "drift-report.html").write_text("<html></html>")


def test_index_lists_reports_in_date_order_and_survives_corrupt_and_foreign_files(tmp_path):
    out = tmp_path / "reports"
    # directory names out of date order on purpose: the index sorts by generated_at
    _write(out, "b-second", "2026-11-25T10:00:00+00:00", "warn")
    _write(out, "a-third", "2026-11-26T09:00:00Z", "alert")
    _write(out, "c-first", "2026-11-24T10:00:00+00:00")
    (out / "corrupt").mkdir()
    (out / "corrupt" / "drift-report.json").write_text('{"schema": "indexops.drift-report/1", "generated_')
    (out / "foreign").mkdir()
    (out / "foreign" / "drift-report.json").write_text(json.dumps({"schema": "someone-else/2", "generated_at": "2026-11-27"}))
    (out / "notes").mkdir()
    (out / "notes" / "README.txt").write_text("not a report")
    (out / "stray.json").write_text("[1, 2")
    entries, skipped = list_reports(out)
    assert [e["dir"] for e in entries] == ["a-third", "b-second", "c-first"]
    assert sorted(skipped) == ["corrupt", "foreign"]
    html = write_index(out).read_text()
    assert html.index("a-third/drift-report.html") < html.index("b-second/drift-report.html") < html.index("c-first/drift-report.html")
    assert "summary of b-second" in html and "skipped" in html and "corrupt" in html and "<script" not in html
    # a hostile summary stays text
    rep = json.loads((out / "c-first" / "drift-report.json").read_text())
    rep["summary"]["overall"] = "<script>alert(1)</script>"
    (out / "c-first" / "drift-report.json").write_text(json.dumps(copy.deepcopy(rep)))
    assert "<script>" not in write_index(out).read_text()
