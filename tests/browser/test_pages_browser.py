from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class PagesBrowserTests:
    def test_counter_three_visits_then_cookie_check(self, live_server, browser_page):
        for _ in range(3):
            browser_page.goto(f"{live_server.url}/")
        assert browser_page.locator("h1").inner_text() == "Visit count: 3"
        browser_page.get_by_role("link", name="About", exact=True).click()
        browser_page.wait_for_url(f"{live_server.url}/about/")
        assert "Cookie Tested Successfully" in browser_page.content()

    def test_second_browser_context_counts_from_one(self, live_server, chromium, browser_page):
        browser_page.goto(f"{live_server.url}/")
        browser_page.goto(f"{live_server.url}/")
        other = chromium.new_context()
        try:
            other_page = other.new_page()
            other_page.goto(f"{live_server.url}/")
            assert other_page.locator("h1").inner_text() == "Visit count: 1"
        finally:
            other.close()
        assert browser_page.locator("h1").inner_text() == "Visit count: 2"
