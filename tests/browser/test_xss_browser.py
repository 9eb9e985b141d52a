"""XSS payloads recorded through the real request path render as text in the dashboard."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.conftest import DESKTOP_CHROME_UA
from tracker.models import TrackedSession
from tracker.rollups import visits_aggregate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAYLOAD = "<script>alert(1)</script>"
IMG_PAYLOAD = "<img src=x onerror=alert(2)>"
PASSWORD = "xss-browser-test-pw-1"


def record_hostile_visits(drain_visits) -> None:
    """Page views whose path, referrer, UTM fields and user agent carry payloads."""
    client = Client()
    client.get(
        "/",
        {"utm_source": IMG_PAYLOAD, "utm_medium": PAYLOAD, "utm_campaign": IMG_PAYLOAD},
        HTTP_USER_AGENT=f"{DESKTOP_CHROME_UA} {PAYLOAD}",
        HTTP_REFERER=f"https://evil.example/{PAYLOAD}",
    )
    client.get(f"/{IMG_PAYLOAD}", HTTP_USER_AGENT=PAYLOAD + DESKTOP_CHROME_UA)
    client.get("/about/", HTTP_USER_AGENT=DESKTOP_CHROME_UA)
    drain_visits()
    visits_aggregate()


class HostileFieldsBrowserTests:
    def test_payloads_in_every_field_render_as_text(self, live_server, browser_page, drain_visits):
        record_hostile_visits(drain_visits)
        visitor = TrackedSession.objects.get()
        assert visitor.utm_campaign == IMG_PAYLOAD
        assert visitor.visits == 1
        get_user_model().objects.create_user("owner", password=PASSWORD, is_staff=True)
        dialogs: list[str] = []
        browser_page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

        browser_page.goto(f"{live_server.url}/dashboard/?range=24h")
        browser_page.wait_for_url(re.compile(r"/accounts/login/"))
        browser_page.fill("#id_username", "owner")
        browser_page.fill("#id_password", PASSWORD)
        browser_page.click("form.login button[type=submit]")
        browser_page.wait_for_url(re.compile(r"/dashboard/"))
        browser_page.wait_for_load_state("networkidle")
        body = browser_page.locator("body").inner_text()
        assert IMG_PAYLOAD in body  # the campaign and the path, shown as text
        assert browser_page.locator("img[src=x]").count() == 0

        browser_page.goto(f"{live_server.url}/dashboard/sessions/{visitor.tracking_id}/")
        browser_page.wait_for_load_state("networkidle")
        assert IMG_PAYLOAD in browser_page.locator("body").inner_text()
        # The visit's source: the referrer host and the UTM tags, each one text.
        source = browser_page.locator("section.visit .visit-facts").inner_text()
        assert IMG_PAYLOAD in source and PAYLOAD in source
        assert browser_page.locator("img[src=x]").count() == 0
        assert dialogs == []
