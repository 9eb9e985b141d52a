"""Chromium runs the first-party events script on the about page: a data-event click and an
outbound-link click each reach POST /t/event and are stored once."""

from __future__ import annotations

import pytest
from django.conf import settings

from reliability.processes import wait_until
from tracker.buffer import drain_buffered_visits, redis_client
from tracker.models import Event, Visit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def stored_events() -> list[tuple[str, str, dict]]:
    if settings.TRACKER_SINK == "redis":
        drain_buffered_visits()
    return list(Event.objects.order_by("id").values_list("name", "path", "props"))


class EventsBrowserTests:
    def test_data_event_button_and_outbound_link_recorded(self, live_server, browser_page):
        if settings.TRACKER_SINK == "redis":
            redis_client(settings.REDIS_URL).delete(settings.TRACKER_REDIS_STREAM)
        # The outbound site is not reachable from the test: answer it locally, after the
        # beacon has left.
        browser_page.route(
            "https://www.djangoproject.com/**",
            lambda route: route.fulfill(status=200, body="elsewhere", content_type="text/html"),
        )
        browser_page.goto(f"{live_server.url}/")
        browser_page.goto(f"{live_server.url}/about/")
        browser_page.get_by_role("button", name="Press me").click()
        browser_page.get_by_role("link", name="Django's site").click()
        browser_page.wait_for_url("https://www.djangoproject.com/")
        expected = [
            ("cookie_tested", "/about/", {}),
            ("demo button", "/about/", {"place": "about"}),
            ("Outbound Link: Click", "/about/", {"host": "www.djangoproject.com"}),
        ]
        wait_until(
            lambda: len(stored_events()) >= 3, timeout=10, what="three events", interval=0.1
        )
        # Two beacons may reach a threaded server in either order.
        assert sorted(stored_events()) == sorted(expected)
        # All of them the visitor's whose page views the tracker recorded.
        assert set(Event.objects.values_list("tracking_id", flat=True)) == set(
            Visit.objects.values_list("tracking_id", flat=True)
        )
