"""Fixtures shared by the whole suite: a real Chromium for browser tests, Redis when configured."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Headless Chromium calls itself HeadlessChrome, which bot lists flag; tracked tests look ordinary.
DESKTOP_CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def chromium():
    """A real Debian Chromium driven by Playwright; skipped only where Chromium is absent."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test database is still used
    # synchronously here, so Django's async guard would refuse it.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context(user_agent=DESKTOP_CHROME_UA)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def redis_url():
    """The Redis this run was given (REDIS_URL), or skip: the embedded default has none."""
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set: this configuration runs without Redis")
    return url


@pytest.fixture
def drain_visits(settings):
    """Return a callable that moves this test's buffered visits into the database.

    With Redis as the sink a page view lands in a stream first; the test gets a stream of its
    own (deleted afterwards), so visits left by other tests are never drained into it. Without
    Redis the sinks' replies still due are awaited (PostgreSQL's pipeline sink).
    """
    from tracker.buffer import drain_buffered_visits, flush_open_sinks, redis_client

    if not settings.REDIS_URL:
        yield flush_open_sinks
        return

    settings.TRACKER_REDIS_STREAM = f"tracker:test:{uuid.uuid4().hex}"
    yield lambda: drain_buffered_visits(reclaim_idle_ms=0)
    redis_client(settings.REDIS_URL).delete(settings.TRACKER_REDIS_STREAM)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """Close the sinks' own database connections before the test database is dropped."""
    yield
    from tracker.buffer import close_open_sinks

    close_open_sinks()
