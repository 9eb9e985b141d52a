"""Chromium: a funnel created on the funnels page (htmx form) is drawn on the dashboard as
plotly's funnel chart, with its table."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from tests.browser.test_dashboard_browser import PASSWORD, recorded_traffic, screenshot
from tests.browser.test_shared_links_browser import log_in
from tracker.models import Funnel, FunnelRun, Goal
from tracker.tasks import aggregate_visits

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class FunnelsBrowserTests:
    def test_funnel_created_with_htmx_and_drawn(self, live_server, browser_page):
        cache.clear()
        # Goals first: aggregating the traffic then materializes their hits.
        for name, match in [("Home", "/"), ("Pricing", "/pricing/"), ("Signup", "/signup/")]:
            Goal.objects.create(name=name, kind="page", match=match)
        recorded_traffic(timezone.now())
        get_user_model().objects.create_user("owner", password=PASSWORD, is_staff=True)
        page = browser_page
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        log_in(page, live_server.url, "/dashboard/funnels/")

        page.evaluate("window.__noReload = true")
        page.fill("input[name=name]", "Home to signup")
        page.check("input[name=across_visits]")
        page.select_option("select[name=step_1]", label="Home")
        page.select_option("select[name=step_2]", label="Pricing")
        page.select_option("select[name=step_3]", label="Signup")
        page.click("#editor button[type=submit]:has-text('Create funnel')")
        page.wait_for_selector("#editor [role=status]:has-text('Home to signup')")
        assert page.evaluate("window.__noReload") is True  # swapped by htmx, not reloaded
        funnel = Funnel.objects.get(name="Home to signup")
        assert funnel.across_visits
        assert [step.goal.name for step in funnel.steps.order_by("position")] == [
            "Home",
            "Pricing",
            "Signup",
        ]
        # What the worker does next (the queued rebuild, or the next aggregation run's catch-up).
        aggregate_visits()
        assert FunnelRun.objects.filter(funnel=funnel).exists()

        page.goto(f"{live_server.url}/dashboard/?range=30d")
        chart = page.locator(f'[data-figure="funnel-figure-{funnel.pk}"]')
        chart.locator("svg.main-svg").first.wait_for()
        trace_type = page.evaluate(
            f"document.querySelector('[data-figure=\"funnel-figure-{funnel.pk}\"]').data[0].type"
        )
        assert trace_type == "funnel"
        assert chart.locator(".funnellayer, g.trace").count() >= 1
        rows = page.locator("#funnels .funnel-table tbody tr")
        assert rows.count() == 3
        first_visitors = int(rows.nth(0).locator("td.num").first.inner_text().replace(",", ""))
        assert first_visitors > 0
        screenshot(page, "dashboard-funnels.png")
        assert dialogs == []
