"""Bots seen as requests: the headers besides the user agent, and a worker that starts warm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from tests.tracker.user_agents import BROWSER_UA
from tracker.models import Visit

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def direct_sink_db_sessions(settings):
    """Visits straight into the database, sessions in it too: both can be counted."""
    settings.TRACKER_SINK = "direct"
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"


class AnnouncedBotTests:
    @pytest.mark.parametrize(
        "headers",
        [
            {"from": "googlebot(at)googlebot.com"},
            {"from": "crawler@example.org"},
            {"sec-ch-ua": '"HeadlessChrome";v="131", "Chromium";v="131"'},
        ],
    )
    def test_bot_header_browser_ua_no_visit_no_session(self, headers):
        client = Client(headers={"user-agent": BROWSER_UA, **headers})
        assert client.get("/").status_code == 200
        assert client.get("/about/").status_code == 200
        assert Visit.objects.count() == 0
        assert Session.objects.count() == 0
        assert "sessionid" not in client.cookies

    @pytest.mark.parametrize(
        "user_agent",
        [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/131.0.6778.33 Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Playwright/1.49.0",
        ],
    )
    def test_automation_browser_no_visit_no_session(self, user_agent):
        client = Client(headers={"user-agent": user_agent})
        assert client.get("/").status_code == 200
        assert Visit.objects.count() == 0
        assert Session.objects.count() == 0

    def test_browser_headers_recorded(self):
        client = Client(
            headers={
                "user-agent": BROWSER_UA,
                "sec-ch-ua": '"Chromium";v="126", "Google Chrome";v="126", "Not-A.Brand";v="99"',
            }
        )
        assert client.get("/").status_code == 200
        assert Visit.objects.count() == 1


class WorkerStartTests:
    def test_wsgi_application_starts_with_classifier_warm(self):
        """The handler a worker builds at start loads the middleware, which warms the parsers:
        a never-seen user agent then costs well under a millisecond, not the ~90 ms of a cold
        parser."""
        script = (
            "import time\n"
            "from django.core.wsgi import get_wsgi_application\n"
            "get_wsgi_application()\n"
            "from tracker.classify import classifier_is_warm, classify_user_agent\n"
            "assert classifier_is_warm()\n"
            "started = time.perf_counter()\n"
            "classify_user_agent('Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 "
            "Firefox/133.0')\n"
            "print((time.perf_counter() - started) * 1000)\n"
        )
        environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "analytics_site.settings"}
        environment.pop("TRACKER_ENABLED", None)
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        # The figure is printed, not asserted: a loaded 2-core machine can take any time. That
        # the parsers are built at start is what classifier_is_warm() checks above.
        first_ms = float(result.stdout.split()[-1])
        print(f"\nfirst never-seen user agent after worker start: {first_ms:.3f} ms")
