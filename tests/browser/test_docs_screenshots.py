"""The README's screenshots, taken from a month of generated traffic as `make demo` makes it, at
desktop and phone width; the test fails where the page would look broken (an empty panel, a
chart not drawn, a page wider than the phone)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from tests.browser.test_dashboard_browser import PASSWORD, charts_drawn
from tests.browser.test_shared_links_browser import log_in
from tracker.rollups import visits_aggregate
from tracker.traffic import traffic_generate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS_DIR = Path(__file__).resolve().parent.parent.parent / "docs"
PANELS = ["cards", "over-time", "visits", "pages", "sources", "tech", "countries", "events"]


class DocsScreenshotTests:
    def test_dashboard_screenshots_desktop_and_phone(self, live_server, browser_page):
        cache.clear()
        traffic_generate(sessions=1500, days=30, seed=7, progress=False)
        visits_aggregate()
        get_user_model().objects.create_user("owner", password=PASSWORD, is_staff=True)
        page = browser_page
        page.set_viewport_size({"width": 1280, "height": 900})
        log_in(page, live_server.url, "/dashboard/?range=30d")
        charts_drawn(page)
        for panel in PANELS:
            assert page.locator(f"#{panel}").count() == 1, panel
        # Every panel but the events one (generated traffic has none) shows figures.
        assert page.locator("#countries tbody tr").count() == 10
        assert page.locator("#pages tbody tr").count() >= 10
        page.screenshot(path=str(DOCS_DIR / "dashboard.png"), full_page=True)

        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        charts_drawn(page)
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
        page.screenshot(path=str(DOCS_DIR / "dashboard-phone.png"), full_page=True)
