"""Filters in a real Chromium: a click on a referrer row filters every panel and pushes the URL,
the chip removes it, Back returns to the previous filter, hostile values stay text."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.utils import timezone

from tests.browser import test_dashboard_browser
from tests.browser.test_dashboard_browser import charts_drawn, figure
from tracker.models import Visit
from tracker.rollups import visits_aggregate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# The logged-in dashboard over recorded traffic, as the dashboard's own browser tests have it.
dashboard_page = test_dashboard_browser.dashboard_page

HOSTILE_CAMPAIGN = "<script>window.__xss=1</script>"
HOSTILE_REFERRER = "\"'><img src=x onerror=window.__xss=2>.example"
HOSTILE_PATH = "/\"'><svg onload=window.__xss=3>/"


def hostile_traffic() -> None:
    """A few visits whose path, referrer and campaign an attacker chose."""
    now = timezone.now()
    Visit.objects.bulk_create(
        Visit(
            event_id=uuid.uuid4(),
            tracking_id=uuid.UUID(int=5000 + number),
            visited_at=now - dt.timedelta(hours=5, minutes=number),
            path=HOSTILE_PATH,
            referrer_host=HOSTILE_REFERRER,
            utm_campaign=HOSTILE_CAMPAIGN,
            browser="Chrome",
            os="Linux",
            device="desktop",
            status_code=200,
            response_ms=5,
        )
        for number in range(3)
    )
    visits_aggregate()


def query_of(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query, keep_blank_values=True)


def stats(page, query: dict) -> dict:
    response = page.request.get(f"{page.url.split('?')[0]}api/stats.json?{urlencode(query)}")
    return response.json()


def panels_settled(page) -> None:
    page.wait_for_function("!document.querySelector('#panels.htmx-request')")
    charts_drawn(page)


def rows_of(page, section: str, nth: int) -> list[str]:
    """The first column of one table of a panel."""
    table = page.locator(f"#{section} > div").nth(nth).locator("tbody tr td:first-child")
    return [text.strip() for text in table.all_inner_texts()]


class FilterBrowserTests:
    def test_referrer_click_filters_every_panel_chip_and_back(self, dashboard_page, live_server):
        page = dashboard_page
        unfiltered_visits = figure(page, "visits")
        unfiltered_pageviews = figure(page, "pageviews")

        page.locator("#sources a.filter-link", has_text="news.example").first.click()
        page.wait_for_url(re.compile(r"referrer=news\.example"))
        panels_settled(page)
        expected = stats(page, {"range": "7d", "referrer": "news.example"})
        assert expected["visits"] < int(unfiltered_visits.replace(",", ""))
        assert figure(page, "visits") == f"{expected['visits']:,}"
        assert figure(page, "pageviews") == f"{expected['pageviews']:,}"
        assert figure(page, "visitors") == f"{expected['visitors']:,}"
        # Every panel shows the filtered visits: referrers only the one, devices and browsers
        # sum to the filtered visits, the chip names the filter.
        assert rows_of(page, "sources", 0) == ["news.example"]
        device_visits = page.locator("#tech > div").nth(2).locator("tbody tr td:nth-child(2)")
        assert (
            sum(int(text.replace(",", "")) for text in device_visits.all_inner_texts())
            == (expected["visits"])
        )
        assert rows_of(page, "pages", 0) == [row["path"] for row in expected["top_pages"]]
        assert page.locator('.filter-chip[data-filter="referrer"]').count() == 1

        # A second filter (a browser row), then Back to the first one.
        browser = rows_of(page, "tech", 0)[0]
        page.locator("#tech > div").nth(0).locator("a.filter-link").first.click()
        page.wait_for_url(re.compile(r"browser="))
        panels_settled(page)
        assert query_of(page)["browser"] == [browser]
        both = stats(page, {"range": "7d", "referrer": "news.example", "browser": browser})
        assert figure(page, "visits") == f"{both['visits']:,}"
        assert page.locator(".filter-chip").count() == 2

        page.go_back()
        page.wait_for_url(re.compile(r"referrer=news\.example$"))
        panels_settled(page)
        assert figure(page, "visits") == f"{expected['visits']:,}"
        assert page.locator(".filter-chip").count() == 1

        # Removing the chip restores the unfiltered page.
        page.locator('.filter-chip[data-filter="referrer"] a').click()
        page.wait_for_url(lambda url: "referrer" not in url)
        panels_settled(page)
        assert figure(page, "visits") == unfiltered_visits
        assert figure(page, "pageviews") == unfiltered_pageviews
        assert page.locator(".filter-chip").count() == 0

    def test_add_filter_form_is_not(self, dashboard_page):
        page = dashboard_page
        page.locator(".filter-add summary").click()
        page.select_option("select[name=_dimension]", "referrer")
        page.select_option("select[name=_operator]", "__not")
        page.fill("input[name=_value]", "news.example")
        page.locator(".filter-form button[type=submit]").click()
        page.wait_for_url(re.compile(r"referrer__not=news\.example"))
        panels_settled(page)
        expected = stats(page, {"range": "7d", "referrer__not": "news.example"})
        assert figure(page, "visits") == f"{expected['visits']:,}"
        assert "news.example" not in rows_of(page, "sources", 0)

    def test_hostile_values_never_inject(self, dashboard_page):
        page = dashboard_page
        hostile_traffic()
        page.reload()
        charts_drawn(page)
        # The hostile campaign's row filters like any other.
        campaigns = page.locator("#sources > div").nth(3).locator("a.filter-link")
        campaigns.filter(has_text=HOSTILE_CAMPAIGN).click()
        page.wait_for_url(re.compile(r"utm_campaign="))
        panels_settled(page)
        assert query_of(page)["utm_campaign"] == [HOSTILE_CAMPAIGN]
        assert figure(page, "visits") == "3"
        chip = page.locator('.filter-chip[data-filter="utm_campaign"] code')
        assert chip.inner_text() == HOSTILE_CAMPAIGN
        # Hostile values typed into the URL too: every one shows as text.
        query = urlencode(
            {
                "range": "7d",
                "referrer": HOSTILE_REFERRER,
                "page__contains": HOSTILE_PATH,
                "utm_campaign__not": HOSTILE_CAMPAIGN,
            }
        )
        page.goto(f"{page.url.split('?')[0]}?{query}")
        charts_drawn(page)
        chips = page.locator(".filter-chip code").all_inner_texts()
        assert HOSTILE_REFERRER in chips and HOSTILE_PATH in chips and HOSTILE_CAMPAIGN in chips
        assert page.evaluate("window.__xss") is None
        assert page.locator("img[src=x]").count() == 0
        assert page.locator("svg[onload]").count() == 0
        assert page.locator("script:not([type])", has_text="__xss").count() == 0
