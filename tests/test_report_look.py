"""The effect report and the monthly service report as an account manager sees them: the HTML
opened in headless Chromium (Debian's chromium, driven by Playwright), screenshotted; their charts
shown at their size and twice as sharp, their tables within the page, and their Chinese text drawn
in a CJK font rather than as empty boxes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright import sync_api

from releaser.report.compute import build
from releaser.report.render import render
from releaser.report.service import build_service
from releaser.report.service_render import render_service
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.months import november
from tests.harness.reports import dataset, step

pytestmark = pytest.mark.chromium


def platform_fonts(page, selector: str) -> dict[str, int]:
    """The fonts Chromium really drew the element's text with: family -> glyphs drawn."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return {f["familyName"]: f["glyphCount"] for f in fonts}


def test_the_chinese_report_in_a_browser(tmp_path):
    config, store, _live, now = dataset(tmp_path, [step()] * 12, [step(errors=3, fast=95)] * 12, 60.0, language="zh-CN")
    page_file = tmp_path / "report.html"
    page_file.write_text(render(build(config, store, "2.0.0", now=now)).html, encoding="utf-8")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800}, device_scale_factor=2)
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            shot = Path(os.environ.get("RELEASER_REPORT_SHOT") or tmp_path / "report.png")
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000

            images = page.eval_on_selector_all(
                "figure img", "els => els.map(e => [e.naturalWidth, e.naturalHeight, e.clientWidth, e.clientHeight])"
            )
            assert len(images) == 7
            for natural_w, natural_h, shown_w, shown_h in images:
                assert (natural_w, natural_h) == (1440, 480)
                assert (shown_w, shown_h) == (720, 240)  # shown at half: sharp on a 2x screen and in print

            heading = page.inner_text("h1")
            han = len(re.findall(r"[\u4e00-\u9fff]", heading))
            assert han >= 4, heading
            fonts = platform_fonts(page, "h1")
            cjk = {family: glyphs for family, glyphs in fonts.items() if "CJK" in family or "Han" in family}
            assert sum(cjk.values()) >= han, fonts  # every Chinese character drawn by a CJK font: no tofu
            summary = platform_fonts(page, ".summary .verdict")
            assert any("CJK" in family for family in summary), summary
        finally:
            browser.close()


def test_the_chinese_service_report_in_a_browser(tmp_path):
    config, store = november(tmp_path, language="zh-CN")
    page_file = tmp_path / "service.html"
    page_file.write_text(render_service(build_service(config, store, "2026-11")).html, encoding="utf-8")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800}, device_scale_factor=2)
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            shot = tmp_path / "service.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000
            (chart,) = page.eval_on_selector_all(
                "figure img", "els => els.map(e => [e.naturalWidth, e.naturalHeight, e.clientWidth, e.clientHeight])"
            )
            natural_w, natural_h, shown_w, shown_h = chart
            assert (shown_w * 2, shown_h * 2) == (natural_w, natural_h) and shown_w == 720  # sharp on a 2x screen
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the report is wider than the window by {overflow}px"
            heading = page.inner_text("h1")
            han = len(re.findall(r"[\u4e00-\u9fff]", heading))
            assert han >= 4, heading
            fonts = platform_fonts(page, "h1")
            assert sum(g for family, g in fonts.items() if "CJK" in family or "Han" in family) >= han, fonts
            assert any("CJK" in family for family in platform_fonts(page, "table th")), "a table drew no CJK glyph"
        finally:
            browser.close()
