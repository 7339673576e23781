"""The drift report in headless Chromium: every section renders, no console error, and document
texts carrying markup stay text. A screenshot is kept in tests/artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from indexops.drift.report import SECTIONS, build_drift_report, write_drift_report
from indexops.settings import load_settings
from tests.conftest import CHROMIUM, REPO
from tests.drift_helpers import IMG, SCRIPT, build_workspace

ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report-browser")
    p = build_workspace(tmp)
    # unredacted, so the hostile document text reaches the page verbatim (escaped)
    rep = build_drift_report(p["workspace"], load_settings(p["config"]), query_log=p["query_log"], redact=False)
    return write_drift_report(rep, tmp / "out")["html"]


def test_report_renders_in_chromium_without_errors_or_script_execution(report_html):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)")
    from playwright import sync_api
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(report_html.as_uri())
            page.wait_for_load_state("load")
            for sid, title in SECTIONS.items():
                sec = page.locator(f'section[data-section="{sid}"]')
                assert sec.count() == 1 and sec.is_visible(), sid
                assert title in sec.locator("h2").inner_text()
                assert sec.get_attribute("data-verdict") in ("ok", "warn", "alert", "n/a")
            imgs = page.locator("section img")
            assert imgs.count() >= 5
            widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
            assert all(w > 0 for w in widths), widths  # every inline plot decoded
            assert page.evaluate("window.__pwned") is None
            assert page.locator("script").count() == 0
            body = page.inner_text("body")
            assert SCRIPT in body and IMG in body  # shown as text, not run
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "drift-report.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot: {shot}")
            shutil.copy(report_html, ARTIFACTS / "drift-report.html")
        finally:
            browser.close()
    assert not errors, errors
    assert shot.stat().st_size > 10_000
