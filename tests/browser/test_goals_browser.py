"""The Goals page and panel in Chromium: the htmx form adds a goal (or shows what is wrong),
and the dashboard's Goals panel shows its figures once its hits are built."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from tests.browser.test_dashboard_browser import recorded_traffic
from tracker.goals import goal_hits_rebuild
from tracker.models import Goal

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-goals-pw-1"


@pytest.fixture
def goals_page(live_server, browser_page):
    cache.clear()
    recorded_traffic(timezone.now())
    get_user_model().objects.create_user("owner", password=PASSWORD, is_staff=True)
    browser_page.goto(f"{live_server.url}/dashboard/goals/")
    browser_page.wait_for_url(re.compile(r"/accounts/login/"))
    browser_page.fill("#id_username", "owner")
    browser_page.fill("#id_password", PASSWORD)
    browser_page.click("form.login button[type=submit]")
    browser_page.wait_for_url(f"{live_server.url}/dashboard/goals/")
    return browser_page


class GoalsBrowserTests:
    def test_add_goal_with_htmx_and_see_it_on_the_dashboard(self, live_server, goals_page):
        page = goals_page
        page.fill("input[name=name]", "Saw pricing")
        page.select_option("select[name=kind]", "page")
        page.fill("input[name=match]", "pricing")  # no leading slash: refused
        page.click("#goals button[type=submit]")
        page.wait_for_selector("#goals .warn >> text=starts with")
        assert not Goal.objects.exists()
        page.fill("input[name=match]", "/pricing/")
        page.click("#goals button[type=submit]")
        page.wait_for_selector("#goals tr[data-goal-id] >> text=Saw pricing")
        assert page.url == f"{live_server.url}/dashboard/goals/"  # swapped in place
        goal_hits_rebuild(goal_id=Goal.objects.get().id)  # what the queued task does
        page.click("text=Back to the dashboard")
        row = page.wait_for_selector('#goals tr[data-goal="Saw pricing"]')
        visitors = row.query_selector('[data-figure="visitors"]').inner_text()
        assert int(visitors.replace(",", "")) > 0
