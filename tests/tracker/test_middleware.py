from __future__ import annotations

import logging
import uuid

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import models
from django.http import HttpResponse, JsonResponse
from django.test import Client, RequestFactory

from tests.tracker.user_agents import BROWSER_UA, CRAWLER_USER_AGENTS
from tracker.middleware import VisitTrackingMiddleware
from tracker.models import (
    FAMILY_MAX_LENGTH,
    HOST_MAX_LENGTH,
    PATH_MAX_LENGTH,
    AggregationState,
    PageHourly,
    TrackedSession,
    Visit,
    VisitHourly,
)
from tracker.recording import TRACKING_ID_SESSION_KEY

pytestmark = pytest.mark.django_db

SESSION_ENGINES = {
    "db": "django.contrib.sessions.backends.db",
    "cache": "django.contrib.sessions.backends.cache",
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "file": "django.contrib.sessions.backends.file",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}


@pytest.fixture(autouse=True)
def direct_sink_db_sessions(settings):
    """These tests read visits straight from the database: the direct sink, db sessions."""
    settings.TRACKER_SINK = "direct"
    settings.SESSION_ENGINE = SESSION_ENGINES["db"]


def browser(**headers) -> Client:
    return Client(headers={"user-agent": BROWSER_UA, **headers})


def tracking_ids() -> set[uuid.UUID]:
    return set(Visit.objects.values_list("tracking_id", flat=True))


class CrawlerTests:
    @pytest.mark.parametrize("user_agent", CRAWLER_USER_AGENTS)
    def test_crawler_no_visit_no_session(self, user_agent):
        crawler = Client(headers={"user-agent": user_agent})
        assert crawler.get("/").status_code == 200
        assert crawler.get("/about/").status_code == 200
        assert crawler.get("/").status_code == 200
        assert Visit.objects.count() == 0
        assert Session.objects.count() == 0
        assert "sessionid" not in crawler.cookies

    def test_crawler_ten_thousand_pages_no_session(self):
        paths = ["/", "/about/", "/no-such-page/"]
        # One client (a new one loads every middleware again), its cookie jar emptied each time.
        crawler = Client()
        for number in range(10_000):
            crawler.cookies.clear()
            user_agent = CRAWLER_USER_AGENTS[number % len(CRAWLER_USER_AGENTS)]
            crawler.get(paths[number % 3], headers={"user-agent": user_agent})
        assert Visit.objects.count() == 0
        assert Session.objects.count() == 0

    def test_empty_user_agent_not_recorded(self):
        client = Client()
        assert client.get("/").status_code == 200
        assert Visit.objects.count() == 0


class OptOutTests:
    @pytest.mark.parametrize("header", [{"dnt": "1"}, {"sec-gpc": "1"}])
    def test_opt_out_no_visit_no_session(self, header):
        client = browser(**header)
        assert client.get("/about/").status_code == 200
        assert Visit.objects.count() == 0
        assert Session.objects.count() == 0

    @pytest.mark.parametrize("header", [{"dnt": "1"}, {"sec-gpc": "1"}])
    def test_opt_out_counter_session_has_no_tracking_id(self, header):
        """The counter keeps its own session (a site feature); the tracker adds nothing to it."""
        client = browser(**header)
        client.get("/")
        assert Visit.objects.count() == 0
        assert TRACKING_ID_SESSION_KEY not in client.session

    def test_opt_out_ignored_when_setting_off(self, settings):
        settings.TRACKER_RESPECT_DNT = False
        browser(dnt="1").get("/about/")
        assert Visit.objects.count() == 1


class ExclusionTests:
    @pytest.mark.parametrize(
        ("path", "headers"),
        [
            ("/about/", {"sec-purpose": "prefetch"}),
            ("/about/", {"sec-purpose": "prefetch;prerender"}),
            ("/about/", {"purpose": "prefetch"}),
            ("/about/", {"hx-request": "true"}),
            ("/static/site.css", {}),
            ("/static/missing.css", {}),
            ("/admin/", {}),
            ("/admin/login/", {}),
            ("/dashboard/", {}),
            ("/healthz", {}),
            ("/favicon.ico", {}),
            ("/robots.txt", {}),
            ("/about", {}),
        ],
    )
    def test_excluded_no_visit_no_session(self, path, headers):
        response = browser(**headers).get(path)
        assert response.status_code < 500
        assert Visit.objects.count() == 0
        assert Session.objects.count() == 0

    def test_excluded_post_not_recorded(self):
        assert browser().post("/").status_code == 405
        assert Visit.objects.count() == 0

    def test_excluded_setting_regexes(self, settings):
        settings.TRACKER_EXCLUDE_PATHS = [r"^/ab"]
        browser().get("/about/")
        browser().get("/")
        assert list(Visit.objects.values_list("path", flat=True)) == ["/"]

    def test_boosted_htmx_navigation_recorded(self):
        browser(hx_request="true", hx_boosted="true").get("/about/")
        assert list(Visit.objects.values_list("path", flat=True)) == ["/about/"]

    def test_non_html_response_not_recorded(self):
        middleware = VisitTrackingMiddleware(lambda request: JsonResponse({"ok": True}))
        request = RequestFactory().get("/api/", headers={"user-agent": BROWSER_UA})
        request.session = SessionStore()
        middleware(request)
        assert Visit.objects.count() == 0


class RecordingTests:
    def test_page_views_recorded_one_session(self):
        client = browser(referer="https://news.ycombinator.com/item?id=1")
        for path in ["/", "/about/?utm_source=hn&utm_campaign=launch", "/"]:
            assert client.get(path).status_code == 200
        visits = list(Visit.objects.order_by("id").values())
        assert [visit["path"] for visit in visits] == ["/", "/about/", "/"]
        assert len({visit["tracking_id"] for visit in visits}) == 1
        assert visits[1]["utm_source"] == "hn"
        assert visits[1]["utm_campaign"] == "launch"
        assert {visit["referrer_host"] for visit in visits} == {"news.ycombinator.com"}
        assert {(visit["browser"], visit["os"], visit["device"]) for visit in visits} == {
            ("Chrome", "Linux", "desktop")
        }
        assert Session.objects.count() == 1

    def test_internal_referrer_not_stored(self):
        browser(referer="http://testserver/").get("/about/")
        assert Visit.objects.get().referrer_host == ""

    def test_first_visit_creates_session(self):
        client = browser()
        client.get("/about/")
        assert Session.objects.count() == 1
        assert TRACKING_ID_SESSION_KEY in client.session

    def test_not_found_page_recorded_with_status(self):
        browser().get("/no-such-page/")
        assert Visit.objects.get().status_code == 404

    def test_failing_sink_page_still_served(self, caplog):
        class BrokenSink:
            def write(self, visit: dict) -> None:
                raise RuntimeError("disk full")

        middleware = VisitTrackingMiddleware(lambda request: HttpResponse("<p>page</p>"))
        middleware.sink = BrokenSink()
        request = RequestFactory().get("/", headers={"user-agent": BROWSER_UA})
        request.session = SessionStore()
        with caplog.at_level(logging.ERROR, logger="tracker.middleware"):
            response = middleware(request)
        assert response.status_code == 200
        assert middleware.failure_count == 1
        assert "Recording a visit failed" in caplog.text


class HostileInputTests:
    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("/" + "a" * 10_000, 404),
            ("/%zz%ff%c3(/", 404),
            ("/%E0%A4%A/", 404),
            ("/nul%00byte/", 404),
            ("/caf%C3%A9/%F0%9F%98%80/", 404),
            ("/%3Cscript%3Ealert(1)%3C/script%3E", 404),
            ("/?utm_source=%00%ff%zz<script>&utm_medium=" + "m" * 5000, 200),
        ],
    )
    def test_hostile_path_normal_status_capped(self, path, status):
        response = browser(referer="https://<script>alert(1)</script>/%00").get(path)
        assert response.status_code == status
        visit = Visit.objects.get()
        assert len(visit.path) <= PATH_MAX_LENGTH
        assert "\x00" not in visit.path + visit.utm_source
        assert len(visit.utm_medium) <= 100

    def test_hostile_user_agent_never_500(self):
        user_agent = "Mozilla/5.0 <script>alert(1)</script> " + "\u2603" * 3000
        response = Client(headers={"user-agent": user_agent}).get("/")
        assert response.status_code == 200
        for visit in Visit.objects.all():
            assert len(visit.browser) <= FAMILY_MAX_LENGTH
            assert len(visit.os) <= FAMILY_MAX_LENGTH

    def test_hostile_referrer_capped(self):
        browser(referer="https://" + "x" * 5000 + ".example/").get("/")
        assert len(Visit.objects.get().referrer_host) <= HOST_MAX_LENGTH

    @pytest.mark.parametrize(
        "cookie",
        [
            "garbage!!<script>",
            "\x00\x01",
            "abcdefgh\x00ijklmnop",
            "a" * 5000,
            "abcdefghijklmnopqrstuvwxyz012345",
        ],
    )
    def test_forged_session_cookie_never_adopted(self, cookie):
        client = browser()
        client.cookies["sessionid"] = cookie
        assert client.get("/").status_code == 200
        assert client.get("/about/").status_code == 200
        new_key = client.cookies["sessionid"].value
        assert new_key != cookie
        assert list(Session.objects.values_list("session_key", flat=True)) == [new_key]
        assert Visit.objects.count() == 2


class SessionKeyPrivacyTests:
    def test_session_key_in_no_tracker_table(self):
        client = browser(referer="https://example.org/")
        for path in ["/", "/about/", "/", "/missing/"]:
            client.get(path)
        session_key = client.cookies["sessionid"].value
        assert Visit.objects.count() == 4
        for model in [Visit, TrackedSession, PageHourly, VisitHourly, AggregationState]:
            for field in model._meta.concrete_fields:
                if isinstance(field, models.CharField | models.TextField | models.UUIDField):
                    lookup = {f"{field.name}__icontains": session_key}
                    assert not model.objects.filter(**lookup).exists(), (model, field.name)


class LoginLogoutTests:
    def test_login_keeps_tracking_id_logout_starts_new(self):
        User.objects.create_user("ada", password="a-long-password-9")
        client = browser()
        client.get("/")
        key_before_login = client.cookies["sessionid"].value
        response = client.post(
            "/accounts/login/", {"username": "ada", "password": "a-long-password-9"}
        )
        assert response.status_code == 302
        assert client.cookies["sessionid"].value != key_before_login
        client.get("/about/")
        first, second = Visit.objects.order_by("id").values_list("tracking_id", flat=True)
        assert first == second
        client.post("/accounts/logout/")
        client.get("/")
        assert len(tracking_ids()) == 2


class SessionEngineTests:
    @pytest.mark.parametrize("engine", SESSION_ENGINES)
    def test_every_engine_records_visits(self, settings, engine, tmp_path):
        settings.SESSION_ENGINE = SESSION_ENGINES[engine]
        settings.SESSION_FILE_PATH = str(tmp_path)
        client = browser()
        for path in ["/", "/about/", "/"]:
            assert client.get(path).status_code == 200
        assert Visit.objects.count() == 3
        assert len(tracking_ids()) == 1
        assert browser().get("/").status_code == 200
        assert len(tracking_ids()) == 2
