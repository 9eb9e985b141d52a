"""The Journeys view in a real Chromium: the Sankey draws, the table lists the flows, the form
updates the view in place and pushes its URL, and hostile paths stay text."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from tests.conftest import ARTIFACTS_DIR
from tracker.models import Visit
from tracker.rollups import visits_aggregate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT_PATH = "/<script>alert(1)</script>"
IMG_PATH = "/<img src=x onerror=alert(2)>"
PASSWORD = "journeys-browser-pw-1"
JOURNEYS = [
    ["/", "/pricing/", "/signup/"],
    ["/", "/pricing/"],
    ["/"],
    ["/", SCRIPT_PATH, IMG_PATH],
    ["/blog/", "/", "/pricing/", "/"],
    ["/pricing/", "/signup/"],
]


def recorded_visits(now: dt.datetime) -> None:
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
                )
            )
    Visit.objects.bulk_create(views)
    visits_aggregate()


def sankey_drawn(page) -> None:
    page.wait_for_function(
        "document.querySelectorAll(\"[data-figure='fig-journey'] svg.main-svg .sankey-link\")"
        ".length > 0"
    )


class JourneysBrowserTests:
    def test_sankey_table_form_and_hostile_paths(self, live_server, browser_page):
        cache.clear()
        recorded_visits(timezone.now())
        get_user_model().objects.create_user("owner", password=PASSWORD, is_staff=True)
        page = browser_page
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"{live_server.url}/dashboard/")
        page.fill("#id_username", "owner")
        page.fill("#id_password", PASSWORD)
        page.click("form.login button[type=submit]")
        page.wait_for_url(f"{live_server.url}/dashboard/")
        page.click("a.journeys-link")
        page.wait_for_url(re.compile(r"/dashboard/journeys/\?$"))
        sankey_drawn(page)
        # Forward from the top entry page, "/": 15 visits, one per step-one flow row.
        assert "15 visits" in page.locator("#journey-title").inner_text()
        rows = page.locator("table.journey-table tbody tr")
        first = [rows.nth(n).locator("td").all_inner_texts() for n in range(rows.count())]
        assert ["1", "/", "/pricing/", "9"] in first
        assert ["1", "/", "(exit)", "3"] in first
        assert ["1", "/", SCRIPT_PATH, "3"] in first
        assert ["2", SCRIPT_PATH, IMG_PATH, "3"] in first
        node_labels = page.locator(
            "[data-figure='fig-journey'] .sankey-node text"
        ).all_text_contents()
        assert SCRIPT_PATH in node_labels and IMG_PATH in node_labels
        assert page.locator("img[src=x]").count() == 0
        ARTIFACTS_DIR.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS_DIR / "journeys.png"), full_page=True)
        page.evaluate("window.__noReload = true")

        # Backward to a hostile page, through the form: in place, URL pushed.
        page.fill("input[name=from]", "")
        page.fill("input[name=to]", IMG_PATH)
        page.select_option("select[name=steps]", "2")
        page.click(".journey-form button[type=submit]")
        page.wait_for_url(re.compile(r"/dashboard/journeys/\?range=7d&from=&to=.*&steps=2$"))
        page.wait_for_function(
            "document.querySelector('#journey-title').textContent.includes('before')"
        )
        sankey_drawn(page)
        rows = page.locator("table.journey-table tbody tr")
        flows = [rows.nth(n).locator("td").all_inner_texts() for n in range(rows.count())]
        assert flows == [["1", SCRIPT_PATH, IMG_PATH, "3"], ["2", "/", SCRIPT_PATH, "3"]]
        assert page.evaluate("window.__noReload") is True
        assert quote(IMG_PATH, safe="/") in page.url or "%3Cimg" in page.url

        # A click on a page in the table shows the journeys from it.
        page.locator("table.journey-table").get_by_role("link", name="/", exact=True).click()
        page.wait_for_url(re.compile(r"from=%2F&steps=2$"))
        sankey_drawn(page)
        page.go_back()
        page.wait_for_url(re.compile(r"steps=2$"))
        sankey_drawn(page)
        assert page.locator("img[src=x]").count() == 0
        assert dialogs == []
