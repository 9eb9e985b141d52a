"""Settings and a shared link in a real Chromium: htmx forms, then the link opened anonymously."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from dashboard.models import ReportSubscription
from tests.browser.test_dashboard_browser import (
    PASSWORD,
    charts_drawn,
    recorded_traffic,
    screenshot,
)
from tests.conftest import DESKTOP_CHROME_UA

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, base: str, next_path: str) -> None:
    page.goto(f"{base}{next_path}")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{base}{next_path}")


class SharedLinkBrowserTests:
    def test_settings_forms_and_shared_dashboard(self, live_server, browser_page, chromium):
        cache.clear()
        recorded_traffic(timezone.now())
        owner = get_user_model().objects.create_user("owner", password=PASSWORD, is_staff=True)
        page = browser_page
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        log_in(page, live_server.url, "/dashboard/settings/")
        page.evaluate("window.__noReload = true")

        # No address: the 400's form is swapped in, saying what is missing.
        page.check("#reports input[value=weekly]")
        page.click("#reports button[type=submit]")
        page.wait_for_selector("#reports .warn:has-text('Reports need an email address')")
        assert not ReportSubscription.objects.exists()
        page.fill("#reports input[name=email]", "owner@example.org")
        page.check("#reports input[value=weekly]")
        page.click("#reports button[type=submit]")
        page.wait_for_selector("#reports .notice")
        subscription = ReportSubscription.objects.get()
        assert (subscription.user, subscription.kind) == (owner, "weekly")
        page.fill("#links input[name=label]", "board <b>")
        page.select_option("#links select[name=expires_in_days]", "7")
        page.click("#links button[type=submit]")
        url = page.locator("[data-new-link]").input_value()
        assert page.evaluate("window.__noReload") is True  # both forms went through htmx
        assert url.startswith(f"{live_server.url}/share/")
        assert "board <b>" in page.locator("#links table").inner_text()
        screenshot(page, "settings.png")

        # Anonymous, in a fresh browser context: the aggregate panels, drawn and switchable.
        context = chromium.new_context(user_agent=DESKTOP_CHROME_UA)
        visitor = context.new_page()
        try:
            visitor.goto(url)
            charts_drawn(visitor)
            assert visitor.locator("#cards .card").count() == 8
            assert visitor.locator("#sessions").count() == 0
            assert visitor.locator("a[href*='/dashboard/sessions/']").count() == 0
            visitor.evaluate("window.__noReload = true")
            visitor.click('nav.ranges a[data-range="30d"]')
            visitor.wait_for_url(f"{url}?range=30d")
            visitor.wait_for_selector('nav.ranges a[data-range="30d"][aria-current="true"]')
            charts_drawn(visitor)
            assert visitor.evaluate("window.__noReload") is True
            screenshot(visitor, "shared-dashboard.png")
            robots = visitor.locator("meta[name=robots]").get_attribute("content")
            assert robots == "noindex"
        finally:
            context.close()

        # Revoked: the same link is a 404 in the visitor's browser.
        page.click("#links button:has-text('Revoke')")
        page.wait_for_selector("#links td:has-text('revoked')")
        assert len(dialogs) == 1
        context = chromium.new_context(user_agent=DESKTOP_CHROME_UA)
        try:
            response = context.new_page().goto(url)
            assert response.status == 404
        finally:
            context.close()
