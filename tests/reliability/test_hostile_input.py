"""Hostile input is normal traffic: property-based requests through the middleware and dashboard."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dashboard.sharing import shared_link_create
from tracker.models import (
    FAMILY_MAX_LENGTH,
    HOST_MAX_LENGTH,
    PATH_MAX_LENGTH,
    UTM_MAX_LENGTH,
    Visit,
)

BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
any_text = st.text(st.characters(codec="utf-8"), max_size=300)
# Percent-encoded bytes (valid or not), raw text, and known troublemakers.
path_bytes = st.binary(max_size=600).map(lambda raw: "".join(f"%{byte:02X}" for byte in raw))
hostile_paths = st.one_of(
    path_bytes,
    any_text,
    st.sampled_from(["%zz", "%", "%E2%82", "%00", "<script>alert(1)</script>", "💥" * 400]),
).map(lambda tail: "/" + tail.lstrip("/"))

pytestmark = pytest.mark.django_db


# What is never a page, by design (README, "What is stored"): static files, the admin, the
# dashboard and its shared links, the health check, favicon.ico and robots.txt.
NEVER_PAGES = ("/static/", "/admin/", "/dashboard/", "/share/", "/healthz")
NEVER_PAGE_NAMES = ("favicon.ico", "robots.txt")


def never_a_page(path: str) -> bool:
    return path.startswith(NEVER_PAGES) or path.rsplit("/", 1)[-1] in NEVER_PAGE_NAMES


def wire(text: str) -> str:
    """The text as a WSGI server hands it over: its UTF-8 bytes read as ISO-8859-1."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def assert_within_caps() -> None:
    """Every stored value respects its column's cap (SQLite would not enforce it for us)."""
    for visit in Visit.objects.all():
        assert len(visit.path) <= PATH_MAX_LENGTH
        assert len(visit.referrer_host) <= HOST_MAX_LENGTH
        for field in (visit.utm_source, visit.utm_medium, visit.utm_campaign):
            assert len(field) <= UTM_MAX_LENGTH
        assert len(visit.browser) <= FAMILY_MAX_LENGTH
        assert len(visit.os) <= FAMILY_MAX_LENGTH
        assert "\x00" not in visit.path


class MiddlewareHostileInputTests:
    @PROPERTY_SETTINGS
    @given(
        path=hostile_paths,
        query=any_text,
        user_agent=any_text,
        referrer=any_text,
        accept_language=any_text,
        cookie=any_text,
    )
    def test_arbitrary_requests_never_500(
        self, client, drain_visits, path, query, user_agent, referrer, accept_language, cookie
    ):
        client.cookies.clear()
        response = client.get(
            path,
            QUERY_STRING=wire(query),
            HTTP_USER_AGENT=wire(user_agent),
            HTTP_REFERER=wire(referrer),
            HTTP_ACCEPT_LANGUAGE=wire(accept_language),
            HTTP_COOKIE=wire(cookie),
        )
        assert response.status_code < 500
        drain_visits()
        assert_within_caps()

    @PROPERTY_SETTINGS
    @given(path=hostile_paths, referrer=any_text)
    def test_arbitrary_paths_from_a_browser_are_recorded_capped(
        self, client, drain_visits, path, referrer
    ):
        client.cookies.clear()
        before = Visit.objects.count()
        response = client.get(path, HTTP_USER_AGENT=BROWSER_UA, HTTP_REFERER=wire(referrer))
        assert response.status_code in {200, 404}
        # The path as the site saw it (percent-decoded): "/static/" is a file, not a page.
        assume(not never_a_page(response.wsgi_request.path))
        drain_visits()
        # A browser's page view is recorded whatever its path: one more row, capped.
        assert Visit.objects.count() == before + 1
        assert_within_caps()


HOSTILE_PARAMS = st.dictionaries(
    st.sampled_from(["range", "start", "end", "path", "page", "partial", "other"]),
    st.one_of(
        any_text,
        st.sampled_from(
            [
                "today",
                "24h",
                "7d",
                "30d",
                "90d",
                "2026-02-30",
                "9999-12-31",
                "0001-01-01",
                "-1",
                "1e9",
                "2026-01-01",
            ]
        ),
    ),
    max_size=5,
)


class DashboardHostileParameterTests:
    @pytest.fixture
    def staff_client(self, client):
        staff = get_user_model().objects.create_user("hostile-staff", is_staff=True)
        client.force_login(staff)
        return client

    @pytest.fixture
    def shared_token(self, settings):
        """A link that allows exports, with no rate limit in the way of the examples."""
        settings.SHARED_LINK_REQUESTS_PER_MINUTE = 10**9
        _, token = shared_link_create(user=None, label="", expires_at=None, allow_exports=True)
        return token

    @PROPERTY_SETTINGS
    @given(
        params=HOSTILE_PARAMS,
        url=st.sampled_from(
            [
                "/dashboard/",
                "/dashboard/api/stats.json",
                "/dashboard/export/sessions.csv",
                "/dashboard/export/pages.csv",
            ]
        ),
        htmx=st.booleans(),
    )
    def test_arbitrary_parameters_give_200_or_400(self, staff_client, params, url, htmx):
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        response = staff_client.get(url, params, **headers)
        assert response.status_code in {200, 400}

    @PROPERTY_SETTINGS
    @given(
        params=HOSTILE_PARAMS,
        suffix=st.sampled_from(["", "api/stats.json", "export/sessions.csv", "export/pages.csv"]),
        htmx=st.booleans(),
    )
    def test_shared_link_arbitrary_parameters_give_200_or_400(
        self, client, shared_token, params, suffix, htmx
    ):
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        response = client.get(f"/share/{shared_token}/{suffix}", params, **headers)
        assert response.status_code in {200, 400}


class CrawlerAndForgedCookieFloodTests:
    def test_crawler_flood_leaves_no_session_and_no_visit(self, client, drain_visits):
        crawler = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
        for number in range(10_000):
            client.cookies.clear()
            path = "/" if number % 2 else "/about/"
            assert client.get(path, HTTP_USER_AGENT=crawler).status_code == 200
        drain_visits()
        assert Session.objects.count() == 0
        assert Visit.objects.count() == 0

    def test_forged_session_cookies_are_never_adopted(self, client, settings, drain_visits):
        import secrets

        forged_keys = set()
        for _ in range(10_000):
            forged = secrets.token_hex(16)
            forged_keys.add(forged)
            client.cookies.clear()
            response = client.get(
                "/",
                HTTP_USER_AGENT=BROWSER_UA,
                HTTP_COOKIE=f"{settings.SESSION_COOKIE_NAME}={forged}",
            )
            assert response.status_code == 200
            issued = response.cookies[settings.SESSION_COOKIE_NAME].value
            assert issued != forged
        drain_visits()
        stored = set(Session.objects.values_list("session_key", flat=True))
        assert len(stored) == 10_000
        assert stored.isdisjoint(forged_keys)
        assert Visit.objects.count() == 10_000
