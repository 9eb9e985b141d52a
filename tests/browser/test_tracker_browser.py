from __future__ import annotations

import pytest
from django.conf import settings

from tracker.buffer import drain_buffered_visits, redis_client
from tracker.models import Visit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def stored_visits() -> list[tuple[str, str, str]]:
    """Visits in the database, after draining the Redis buffer when the site uses one."""
    if settings.TRACKER_SINK == "redis":
        drain_buffered_visits()
    return list(Visit.objects.order_by("id").values_list("path", "browser", "device"))


class TrackerBrowserTests:
    def test_browser_page_views_recorded_one_session(self, live_server, browser_page):
        if settings.TRACKER_SINK == "redis":
            redis_client(settings.REDIS_URL).delete(settings.TRACKER_REDIS_STREAM)
        browser_page.goto(f"{live_server.url}/")
        browser_page.get_by_role("link", name="About", exact=True).click()
        browser_page.wait_for_url(f"{live_server.url}/about/")
        browser_page.goto(f"{live_server.url}/?utm_source=browser-test")
        assert stored_visits() == [
            ("/", "Chrome", "desktop"),
            ("/about/", "Chrome", "desktop"),
            ("/", "Chrome", "desktop"),
        ]
        assert Visit.objects.values("tracking_id").distinct().count() == 1
        assert Visit.objects.filter(utm_source="browser-test").count() == 1

    def test_headless_user_agent_not_recorded(self, live_server, chromium):
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(f"{live_server.url}/")
            page.goto(f"{live_server.url}/about/")
            assert "sessionid" not in {cookie["name"] for cookie in context.cookies()}
        finally:
            context.close()
        assert stored_visits() == []
