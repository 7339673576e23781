"""The drift report in headless Chromium, on a report with history: the first screen (1400×900)
holds the overall verdict, one summary sentence per section and the trend chart; every
`<details>` opens; no console error; document texts carrying markup stay text; the history index
links the reports. Screenshots are kept in tests/artifacts/."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from indexops.drift.report import SECTIONS, build_drift_report, write_drift_report
from indexops.settings import load_settings
from tests.conftest import CHROMIUM, REPO
from tests.drift_helpers import IMG, SCRIPT, build_workspace

ARTIFACTS = REPO / "tests" / "artifacts"
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report-browser")
    p = build_workspace(tmp)
    settings = load_settings(p["config"])
    # unredacted, so the hostile document text reaches the page verbatim (escaped); two reports a
    # day apart, so the history index has something to list
    now = datetime.now(timezone.utc)
    for t in (now - timedelta(days=1), now):
        rep = build_drift_report(p["workspace"], settings, query_log=p["query_log"], redact=False, now=t)
        paths = write_drift_report(rep, tmp / "out")
    return paths["html"]


def _below_fold(page, selector: str) -> list[str]:
    """Elements matching `selector` not wholly inside the first viewport."""
    boxes = page.evaluate(f"Array.from(document.querySelectorAll({selector!r})).map(e => [e.outerHTML.slice(0, 60), e.getBoundingClientRect().bottom])")
    return [h for h, bottom in boxes if bottom > VIEWPORT["height"] or bottom <= 0] if boxes else ["nothing matches " + selector]


def test_report_renders_in_chromium_without_errors_or_script_execution(report_html):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)")
    from playwright import sync_api
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(report_html.as_uri())
            page.wait_for_load_state("load")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "drift-report-first-screen.png"))
            # the first screen: overall verdict, one sentence per section, the trend chart
            assert not _below_fold(page, "header h1 .badge"), "overall verdict below the fold"
            assert page.locator("#overall").inner_text().strip()
            for sid in SECTIONS:
                li = page.locator(f'li[data-summary="{sid}"]')
                assert li.count() == 1 and len(li.inner_text()) > 40, sid
            assert not _below_fold(page, "li[data-summary]"), "a section summary is below the fold"
            trend = page.locator("#glance img")
            assert trend.count() == 1 and "eval time" in (trend.get_attribute("alt") or "")
            assert not _below_fold(page, "#glance img"), "the trend chart is below the fold"
            for sid, title in SECTIONS.items():
                sec = page.locator(f'section[data-section="{sid}"]')
                assert sec.count() == 1 and sec.is_visible(), sid
                assert title in sec.locator("h2").inner_text()
                assert sec.get_attribute("data-verdict") in ("ok", "warn", "alert", "n/a")
            # statistics one click away: every <details> opens and shows its content
            details = page.locator("details")
            assert details.count() >= len(SECTIONS)
            assert "n baseline" not in page.inner_text("body")  # the checks tables start closed
            for i in range(details.count()):
                d = details.nth(i)
                if d.get_attribute("open") is None:
                    d.locator(":scope > summary").click()
                assert d.get_attribute("open") is not None, i
                assert d.locator(":scope > summary ~ *").first.is_visible(), i
            assert "n baseline" in page.inner_text("body") and "How to read this" in page.inner_text("body")
            imgs = page.locator("img")
            assert imgs.count() >= 6
            widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
            assert all(w > 0 for w in widths), widths  # every inline plot decoded
            assert page.evaluate("window.__pwned") is None
            assert page.locator("script").count() == 0
            body = page.inner_text("body")
            assert SCRIPT in body and IMG in body  # shown as text, not run
            shot = ARTIFACTS / "drift-report.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshots: {ARTIFACTS / 'drift-report-first-screen.png'}, {shot}")
            shutil.copy(report_html, ARTIFACTS / "drift-report.html")
            # the history: both reports listed, newest first, each link opens a report
            page.get_by_role("link", name="All reports").first.click()
            page.wait_for_load_state("load")
            rows = page.locator("tbody tr")
            assert rows.count() == 2
            dates = [rows.nth(i).locator("td a").inner_text() for i in range(2)]
            assert dates == sorted(dates, reverse=True)
            rows.nth(1).locator("td a").click()
            page.wait_for_load_state("load")
            assert page.locator("#overall").count() == 1 and page.locator("script").count() == 0
        finally:
            browser.close()
    assert not errors, errors
    assert shot.stat().st_size > 10_000
