"""The Journeys view under a dashboard filter in a real Chromium: the dashboard's link carries it,
the chip shows it, the form keeps it, removing the chip swaps the view in place without it."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from tests.browser.test_journeys_browser import JOURNEYS, sankey_drawn
from tracker.models import Visit, VisitSummary
from tracker.rollups import visits_aggregate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "journey-filters-browser-pw-1"


def journey_visits(now: dt.datetime) -> None:
    """test_journeys_browser's visits, the odd visitors' on mobile: 9 of the 15 through "/"."""
    views = []
    for number, pages in enumerate(JOURNEYS * 3, start=1):
        started = now - dt.timedelta(hours=number)
        for step, path in enumerate(pages):
            views.append(
                Visit(
                    event_id=uuid.uuid4(),
                    tracking_id=uuid.UUID(int=number),
                    visited_at=started + dt.timedelta(seconds=30 * step),
                    path=path,
                    status_code=200,
                    response_ms=8,
                    device="mobile" if number % 2 else "desktop",
                )
            )
    Visit.objects.bulk_create(views)
    visits_aggregate()


class JourneyFiltersBrowserTests:
    def test_filter_chip_link_and_form(self, live_server, browser_page):
        cache.clear()
        journey_visits(timezone.now())
        assert VisitSummary.objects.filter(device="mobile").count() == 9
        get_user_model().objects.create_user("owner", password=PASSWORD, is_staff=True)
        page = browser_page
        page.goto(f"{live_server.url}/dashboard/?device=mobile")
        page.fill("#id_username", "owner")
        page.fill("#id_password", PASSWORD)
        page.click("form.login button[type=submit]")
        page.wait_for_url(re.compile(r"/dashboard/\?device=mobile$"))
        page.click("a.journeys-link")
        page.wait_for_url(re.compile(r"/dashboard/journeys/\?device=mobile$"))
        sankey_drawn(page)
        assert "9 visits" in page.locator("#journey-title").inner_text()
        chip = page.locator("#journeys .filter-chip[data-filter=device]")
        assert "Device is" in chip.inner_text() and "mobile" in chip.inner_text()
        page.evaluate("window.__noReload = true")

        # The form keeps the filter.
        page.fill("input[name=from]", "/pricing/")
        page.click(".journey-form button[type=submit]")
        page.wait_for_url(re.compile(r"range=7d&device=mobile&from=%2Fpricing%2F"))
        page.wait_for_function(
            "document.querySelector('#journey-title').textContent.includes('/pricing/')"
        )
        # Mobile visits through /pricing/: visitors 1, 7, 13 (/, /pricing/, /signup/) and
        # 5, 11, 17 (/blog/, /, /pricing/, /).
        assert "6 visits" in page.locator("#journey-title").inner_text()

        # Removing the chip: in place, on the journeys URL, from= kept, every visit again.
        page.locator("#journeys .filter-chip[data-filter=device] a").click()
        page.wait_for_url(re.compile(r"/dashboard/journeys/\?range=7d&from=%2Fpricing%2F&steps=3$"))
        page.wait_for_function(
            "!document.querySelector('#journeys .filter-chip')"
            " && document.querySelector('#journey-title').textContent.includes('12 visits')"
        )
        assert page.evaluate("window.__noReload") is True
