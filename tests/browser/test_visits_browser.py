"""A real browser's pauses split its session into visits, as stats.json reports them."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from tracker.buffer import drain_buffered_visits, redis_client

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT_SECONDS = 5
# Longer than the timeout whatever the machine's load: a pause can only last longer.
PAUSE_SECONDS = 8


class VisitsBrowserTests:
    def test_pause_over_timeout_makes_two_visits_of_one_visitor(
        self, live_server, browser_page, settings_override
    ):
        if settings.TRACKER_SINK == "redis":
            redis_client(settings.REDIS_URL).delete(settings.TRACKER_REDIS_STREAM)
        for path in ["/", "/about/"]:
            browser_page.goto(f"{live_server.url}{path}")
        time.sleep(PAUSE_SECONDS)
        for path in ["/", "/about/", "/"]:
            browser_page.goto(f"{live_server.url}{path}")
        if settings.TRACKER_SINK == "redis":
            drain_buffered_visits()
        call_command("aggregate_visits")

        client = Client()
        client.force_login(
            get_user_model().objects.create_user("staff", password="unused-pw-1", is_staff=True)
        )
        stats = client.get("/dashboard/api/stats.json", {"range": "24h"}).json()

        assert (stats["visitors"], stats["visits"], stats["pageviews"]) == (1, 2, 5)
        assert stats["sessions"] == 1
        assert stats["returning_visits"] == 1
        histogram = {
            row["bucket"]: row["visitors"] for row in stats["visits_per_visitor_histogram"]
        }
        assert histogram["2"] == 1


@pytest.fixture
def settings_override(settings):
    settings.TRACKER_VISIT_TIMEOUT = TIMEOUT_SECONDS
    return settings
