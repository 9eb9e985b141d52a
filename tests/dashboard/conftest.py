"""A small known data set of raw visits, aggregated by the real aggregation, and the logins."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from tracker.models import Visit
from tracker.rollups import visits_aggregate

UTC = dt.UTC
XSS_PATH = "<img src=x onerror=alert(1)>"
FORMULA_CAMPAIGN = '=HYPERLINK("http://evil.example","x")'
# The known range: three days; the three days before it hold one visit (the baseline).
RANGE_QUERY = "start=2026-01-10&end=2026-01-12"


def session_id(number: int) -> uuid.UUID:
    return uuid.UUID(int=number)


S0, S1, S2, S3, S4, S5, S6 = (session_id(number) for number in range(1, 8))


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


# Where the known visitors are; S0, S2 and S4 came from addresses of no known country.
COUNTRY_OF = {S1: "GB", S3: "US", S5: "GB", S6: "DE"}


def visit(tracking_id: uuid.UUID, visited_at: dt.datetime, path: str, **fields) -> Visit:
    values = {"status_code": 200, "response_ms": 12, "browser": "Chrome", "os": "Linux"}
    values.setdefault("device", "desktop")
    values.setdefault("country", COUNTRY_OF.get(tracking_id, ""))
    values.update(fields)
    return Visit(
        event_id=uuid.uuid4(), tracking_id=tracking_id, visited_at=visited_at, path=path, **values
    )


def known_visits() -> list[Visit]:
    """Fresh, unsaved visits of the known data set (times in UTC; the site runs on UTC)."""
    return [
        # The previous period (7-9 Jan): one bounce.
        visit(S0, at(8, 12), "/"),
        # S1: 3 pages over 120 s, from a newsletter (its later pages announce no source).
        visit(
            S1,
            at(10, 10),
            "/",
            referrer_host="news.example",
            utm_source="newsletter",
            utm_medium="email",
            utm_campaign="winter",
        ),
        visit(S1, at(10, 10, 0, 30), "/pricing/"),
        visit(S1, at(10, 10, 2), "/signup/"),
        # S2: a direct bounce on Firefox.
        visit(S2, at(10, 11, 15), "/", browser="Firefox", os="Windows"),
        # S3: starts before midnight, ends after it: 2 pages, 900 s, mobile Safari.
        visit(
            S3,
            at(10, 23, 50),
            "/blog/",
            referrer_host="search.example",
            browser="Mobile Safari",
            os="iOS",
            device="mobile",
        ),
        visit(S3, at(11, 0, 5), "/", browser="Mobile Safari", os="iOS", device="mobile"),
        # S4: an attacker's path, referrer and campaign; a bounce.
        visit(
            S4,
            at(11, 9),
            XSS_PATH,
            referrer_host="<b>evil</b>.example",
            utm_campaign=FORMULA_CAMPAIGN,
        ),
        # S5: 5 pages over 600 s.
        visit(S5, at(12, 8), "/pricing/"),
        visit(S5, at(12, 8, 1), "/pricing/"),
        visit(S5, at(12, 8, 3), "/signup/"),
        visit(S5, at(12, 8, 4), "/"),
        visit(S5, at(12, 8, 10), "/"),
        # S6: one visitor, two visits: 55 minutes without a page view start the second.
        visit(S6, at(11, 14), "/docs/", referrer_host="search.example"),
        visit(S6, at(11, 14, 5), "/pricing/", referrer_host="search.example"),
        visit(S6, at(11, 15), "/pricing/"),
        visit(S6, at(11, 15, 1), "/signup/"),
    ]


@pytest.fixture(autouse=True)
def empty_cache():
    """Cached panels are keyed by the aggregation stamp, which restarts in every test database."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def known_data(db):
    """Insert the known visits and aggregate them the way production does."""
    visits = Visit.objects.bulk_create(known_visits())
    visits_aggregate()
    return visits


@pytest.fixture
def staff_client(db) -> Client:
    user = get_user_model().objects.create_user("staff", password="unused-pw-1", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def member_client(db) -> Client:
    user = get_user_model().objects.create_user("member", password="unused-pw-2")
    client = Client()
    client.force_login(user)
    return client


HTMX = {"HX-Request": "true"}


def body(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()
