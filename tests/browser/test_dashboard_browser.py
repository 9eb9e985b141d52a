"""The dashboard in a real Chromium: cards and charts drawn, htmx range switches, timelines
grouped by visit, Back, XSS."""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from tests.conftest import ARTIFACTS_DIR
from tracker.models import TrackedSession, Visit
from tracker.rollups import visits_aggregate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS_PATH = "<img src=x onerror=alert(1)>"
PASSWORD = "browser-test-pw-1"
PATHS = ["/", "/pricing/", "/about/", "/blog/hello/", "/docs/start/", "/signup/"]


def recorded_traffic(now: dt.datetime) -> None:
    """About sixty visitors over 25 days, a third of them in the last week, some coming back
    (a visit or two more, hours or days later, each from its own source); one hostile path."""
    rng = random.Random(5)
    visits = []
    for number in range(60):
        tracking_id = uuid.UUID(int=number + 1)
        started = now - dt.timedelta(days=rng.uniform(0.1, 25), minutes=10)
        browser = rng.choice(["Chrome", "Firefox", "Safari"])
        device = rng.choice(["desktop", "mobile"])
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            referrer = rng.choice(["", "www.google.com", "news.example"])
            for step in range(rng.choice([1, 1, 2, 3, 4, 6])):
                visits.append(
                    Visit(
                        event_id=uuid.uuid4(),
                        tracking_id=tracking_id,
                        visited_at=started + dt.timedelta(seconds=40 * step),
                        path=rng.choice(PATHS),
                        referrer_host=referrer if step == 0 else "",
                        browser=browser,
                        os="Linux",
                        device=device,
                        status_code=200,
                        response_ms=10,
                    )
                )
            started = min(
                now - dt.timedelta(minutes=10), started + dt.timedelta(hours=rng.uniform(1, 72))
            )
    # The busiest visit of the last day, on an attacker-controlled path.
    hostile = uuid.UUID(int=999)
    for step in range(12):
        visits.append(
            Visit(
                event_id=uuid.uuid4(),
                tracking_id=hostile,
                visited_at=now - dt.timedelta(hours=3) + dt.timedelta(seconds=20 * step),
                path=XSS_PATH,
                referrer_host="<b>x</b>.example",
                status_code=404,
                response_ms=5,
            )
        )
    Visit.objects.bulk_create(visits)
    visits_aggregate()


@pytest.fixture
def dashboard_page(live_server, browser_page):
    """A logged-in staff browser page on the dashboard, failing the test on any dialog."""
    cache.clear()
    recorded_traffic(timezone.now())
    get_user_model().objects.create_user("owner", password=PASSWORD, is_staff=True)
    dialogs: list[str] = []
    browser_page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    browser_page.goto(f"{live_server.url}/dashboard/")
    browser_page.wait_for_url(re.compile(r"/accounts/login/\?next=/dashboard/"))
    browser_page.fill("#id_username", "owner")
    browser_page.fill("#id_password", PASSWORD)
    browser_page.click("form.login button[type=submit]")
    browser_page.wait_for_url(f"{live_server.url}/dashboard/")
    charts_drawn(browser_page)
    yield browser_page
    assert dialogs == []


def charts_drawn(page) -> None:
    """Every chart holds plotly's SVG."""
    page.wait_for_function(
        "(charts => charts.length > 0 && charts.every(c => c.querySelector('svg.main-svg')))"
        "([...document.querySelectorAll('[data-figure]')])"
    )


def figure(page, name: str) -> str:
    return page.locator(f'[data-figure-name="{name}"]').inner_text()


def screenshot(page, name: str) -> None:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / name), full_page=True)


class DashboardBrowserTests:
    def test_cards_charts_range_switch_timeline_and_back(self, live_server, dashboard_page):
        page = dashboard_page
        assert page.locator("#cards .card").count() == 8
        for name in ("fig-timeseries", "fig-visitors-histogram", "fig-histogram", "fig-busiest"):
            assert page.locator(f"[data-figure='{name}'] svg.main-svg").count() >= 1, name
        assert int(figure(page, "visits")) > int(figure(page, "visitors")) > 0
        screenshot(page, "dashboard-7d.png")
        week_visitors = figure(page, "visitors")
        # A marker on window survives htmx swaps but not a page load.
        page.evaluate("window.__noReload = true")

        page.click('nav.ranges a[data-range="30d"]')
        page.wait_for_url(f"{live_server.url}/dashboard/?range=30d")
        page.wait_for_selector('nav.ranges a[data-range="30d"][aria-current="true"]')
        charts_drawn(page)
        assert figure(page, "visitors") != week_visitors
        assert page.locator(".period").inner_text().startswith("Last 30 days")
        assert page.evaluate("window.__noReload") is True
        screenshot(page, "dashboard-30d.png")

        page.locator("#sessions a.open-timeline").first.click()
        page.wait_for_url(re.compile(r"/dashboard/sessions/[0-9a-f-]{36}/\?range=30d$"))
        page.wait_for_selector("#timeline .timeline .visit ol.steps li")
        assert page.evaluate("window.__noReload") is True
        screenshot(page, "dashboard-timeline.png")

        page.go_back()
        page.wait_for_url(f"{live_server.url}/dashboard/?range=30d")
        page.wait_for_function("!document.querySelector('#timeline .timeline')")
        charts_drawn(page)
        page.go_back()
        page.wait_for_url(f"{live_server.url}/dashboard/")
        page.wait_for_selector('nav.ranges a[data-range="7d"][aria-current="true"]')
        assert figure(page, "visitors") == week_visitors
        charts_drawn(page)

    def test_timeline_by_its_own_url(self, live_server, dashboard_page):
        page = dashboard_page
        page.goto(f"{live_server.url}/dashboard/sessions/{uuid.UUID(int=999)}/")
        assert page.locator("section.visit").count() == 1
        assert page.locator("section.visit h3").inner_text() == "Visit 1"
        assert page.locator("ol.steps li").count() == 12
        assert page.locator("ol.steps li").first.locator(".path").inner_text() == XSS_PATH
        assert "<b>x</b>.example" in page.locator("section.visit .visit-facts").inner_text()

    def test_returning_visitor_timeline_groups_visits(self, live_server, dashboard_page):
        page = dashboard_page
        returning = TrackedSession.objects.filter(visits__gte=2).order_by("tracking_id").first()
        tracking_id = returning.tracking_id
        page.goto(f"{live_server.url}/dashboard/sessions/{tracking_id}/")
        visits = page.locator("section.visit")
        assert visits.count() >= 2
        assert [visits.nth(n).locator("h3").inner_text() for n in range(2)] == [
            "Visit 1",
            "Visit 2",
        ]

    def test_hostile_path_is_text_in_tables_and_charts(self, live_server, dashboard_page):
        page = dashboard_page
        page.goto(f"{live_server.url}/dashboard/?range=24h")
        charts_drawn(page)
        assert page.locator("#pages td.path", has_text=XSS_PATH).count() >= 1
        assert page.locator("#sources td", has_text="<b>x</b>.example").count() == 1
        ticks = page.locator("#visits [data-figure='fig-busiest'] .ytick text")
        tick_labels = ticks.evaluate_all("texts => texts.map(text => text.textContent)")
        assert any(XSS_PATH in label for label in tick_labels), tick_labels
        assert page.locator("img[src=x]").count() == 0
        # Plotly's hover label shows the same text (its drag layer takes the pointer events).
        page.hover("#visits [data-figure='fig-busiest'] .bars .point path >> nth=-1", force=True)
        hover = page.locator("#visits [data-figure='fig-busiest'] .hoverlayer")
        page.wait_for_function(
            "el => el.textContent.includes('onerror')", arg=hover.element_handle()
        )
        assert XSS_PATH in hover.text_content()
        screenshot(page, "dashboard-xss.png")

    def test_phone_layout_has_no_horizontal_scroll(self, live_server, dashboard_page):
        page = dashboard_page
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        charts_drawn(page)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1
        screenshot(page, "dashboard-phone.png")
