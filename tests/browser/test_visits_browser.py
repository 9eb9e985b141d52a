"""Black-box: a real browser on gunicorn, a Celery worker aggregating, stats.json read as staff.

The site runs as users run it, with ``TRACKER_VISIT_TIMEOUT`` set in its environment; the test
only browses, waits, and asks the worker to drain and aggregate.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from reliability.processes import free_port, gunicorn, stop, wait_until
from tests.tracker.test_tasks import Worker, worker_database_url
from tracker.buffer import redis_client
from tracker.models import Visit

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TIMEOUT_SECONDS = 5
# Longer than the timeout whatever the machine's load: a pause can only last longer. Page
# loads inside each group are far below the timeout, even on a loaded machine.
PAUSE_SECONDS = 8
PASSWORD = "a-staff-password-9"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """gunicorn and a Celery worker on the test database, with a short visit timeout."""
    stream = f"tracker:test:{uuid.uuid4().hex}"
    monkeypatch.setenv("TRACKER_VISIT_TIMEOUT", str(TIMEOUT_SECONDS))
    monkeypatch.setenv("TRACKER_REDIS_STREAM", stream)
    env = {
        **os.environ,
        "DEBUG": "1",
        "VAR_DIR": str(tmp_path),
        "DATABASE_URL": worker_database_url(),
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    port = free_port()
    server = gunicorn(env=env, port=port, workers=2, log=tmp_path / "gunicorn.log")
    worker = Worker(tmp_path)  # the same environment, the timeout included
    try:
        yield f"http://127.0.0.1:{port}", worker
    finally:
        worker.stop()
        stop(server)
        if settings.REDIS_URL:
            redis_client(settings.REDIS_URL).delete(stream)


class VisitsBlackBoxTests:
    def test_pause_over_timeout_makes_two_visits_of_one_visitor(self, site, browser_page):
        url, worker = site
        get_user_model().objects.create_user("staff", password=PASSWORD, is_staff=True)

        for path in ["/", "/about/"]:
            browser_page.goto(f"{url}{path}")
        time.sleep(PAUSE_SECONDS)
        for path in ["/", "/about/", "/"]:
            browser_page.goto(f"{url}{path}")

        def stored() -> bool:
            if settings.REDIS_URL:
                worker.run("tracker.tasks.drain_visit_buffer")
            return Visit.objects.count() == 5

        wait_until(stored, timeout=60, what="the five page views to be stored")
        worker.run("tracker.tasks.aggregate_visits")
        browser_page.goto(f"{url}/accounts/login/")
        browser_page.fill("input[name=username]", "staff")
        browser_page.fill("input[name=password]", PASSWORD)
        browser_page.locator("form [type=submit]").click()
        browser_page.wait_for_load_state()
        stats = browser_page.request.get(f"{url}/dashboard/api/stats.json?range=24h").json()

        assert (stats["visitors"], stats["visits"], stats["pageviews"]) == (1, 2, 5)
        assert stats["sessions"] == 1
        assert stats["returning_visits"] == 1
        histogram = {
            row["bucket"]: row["visitors"] for row in stats["visits_per_visitor_histogram"]
        }
        assert histogram["2"] == 1
