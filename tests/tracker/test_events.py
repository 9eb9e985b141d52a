"""Recording events: what record_event and POST /t/event accept, refuse and store."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import transaction
from django.http import HttpResponse
from django.test import Client, RequestFactory
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import tracker
from tests.tracker.user_agents import BROWSER_UA, CRAWLER_USER_AGENTS
from tracker.events import (
    EVENTS_PER_VISITOR_PER_MINUTE,
    EventRefused,
    event_name_clean,
    event_props_clean,
    event_revenue_clean,
)
from tracker.middleware import VisitTrackingMiddleware
from tracker.models import Event, Visit
from tracker.recording import TRACKING_ID_SESSION_KEY
from tracker.views import EVENT_BODY_MAX_BYTES

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def direct_sink_db_sessions(settings):
    """Events read straight from the database: the direct sink, db sessions."""
    settings.TRACKER_SINK = "direct"
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"


def tracked_request(path: str = "/shop/", *, user_agent: str = BROWSER_UA, **headers):
    """A request as the view sees it: a session, and the tracker middleware in front."""
    request = RequestFactory().get(path, headers={"user-agent": user_agent, **headers})
    request.session = SessionStore()
    request.visit_tracker = VisitTrackingMiddleware(lambda request: HttpResponse())
    return request


class EventNameTests:
    @pytest.mark.parametrize(
        "name", ["signup", "a", "x" * 64, "Checkout: paid", "file/download-1.2_b", "été"]
    )
    def test_event_name_clean_accepts(self, name):
        assert event_name_clean(name) == name

    @pytest.mark.parametrize(
        "name",
        ["", "x" * 65, " signup", "signup ", "sign\nup", "a\x00b", "<script>", "a;b", "50%",
         "{{x}}", "a\u202eb", None, 3, ["signup"]],
    )  # fmt: skip
    def test_event_name_clean_refuses(self, name):
        with pytest.raises(ValueError):
            event_name_clean(name)

    @given(st.text(max_size=80))
    def test_event_name_clean_any_text_accepted_only_if_allowed(self, name):
        allowed = (
            1 <= len(name) <= 64
            and name == name.strip()
            and all(char.isalnum() or char in " _-.:/" for char in name)
        )
        try:
            assert event_name_clean(name) == name
            assert allowed
        except EventRefused:
            assert not allowed


class EventPropsTests:
    def test_event_props_clean_keeps_short_strings_and_ints(self):
        props = {"plan": "pro", "seats": 12, "page": "/pricing/", "date": "2026-12-06"}
        assert event_props_clean(props) == {
            "plan": "pro", "seats": "12", "page": "/pricing/", "date": "2026-12-06"
        }  # fmt: skip

    @pytest.mark.parametrize(
        "props",
        [
            {f"k{number}": "v" for number in range(11)},
            {"note": "x" * 101},
            {"email": "someone@example.org"},
            {"contact": "write to Jane.Doe+tag@mail.example.co.uk please"},
            {"phone": "+33 6 12 34 56 78"},
            {"card": "4111 1111 1111 1111"},
            {"ref": "123456789"},
            {"bad key": "v", "": "v"},
            {"ctl": "a\x00b"},
            {"ctl": "line\nbreak"},
            {"nested": {"a": "b"}},
            {"list": ["a"]},
            {"flag": True},
            {"float": 1.5},
            {1: "v"},
            ["not", "a", "mapping"],
            "plan=pro",
        ],
    )
    def test_event_props_clean_refuses(self, props):
        with pytest.raises(ValueError):
            event_props_clean(props)


class EventRevenueTests:
    @pytest.mark.parametrize(
        "revenue", [Decimal("9.99"), Decimal("0"), Decimal("-5.50"), 12, Decimal("1.2345")]
    )
    def test_event_revenue_clean_accepts_decimals(self, revenue):
        assert event_revenue_clean(revenue) == Decimal(revenue)

    @pytest.mark.parametrize(
        "revenue",
        [9.99, "9.99", True, Decimal("NaN"), Decimal("Infinity"), Decimal("1e12"),
         Decimal("0.00001"), Decimal("sNaN")],
    )  # fmt: skip
    def test_event_revenue_clean_refuses(self, revenue):
        with pytest.raises(ValueError):
            event_revenue_clean(revenue)


class RecordEventTests:
    def test_record_event_stores_one_row(self):
        request = tracked_request("/shop/checkout/")
        assert tracker.record_event(
            request, "purchase", props={"plan": "pro"}, revenue=Decimal("49.90")
        )
        event = Event.objects.get()
        assert (event.name, event.path, event.props, event.revenue) == (
            "purchase", "/shop/checkout/", {"plan": "pro"}, Decimal("49.90")
        )  # fmt: skip
        assert str(event.tracking_id) == request.session[TRACKING_ID_SESSION_KEY]

    def test_record_event_same_visitor_as_its_page_views(self):
        client = Client(headers={"user-agent": BROWSER_UA})
        client.get("/")
        client.get("/about/")  # records cookie_tested: the test cookie came back
        event = Event.objects.get()
        assert event.name == "cookie_tested"
        assert event.path == "/about/"
        assert set(Visit.objects.values_list("tracking_id", flat=True)) == {event.tracking_id}

    def test_record_event_about_page_without_the_test_cookie_records_nothing(self):
        client = Client(headers={"user-agent": BROWSER_UA})
        client.get("/about/")
        assert Event.objects.count() == 0

    def test_record_event_creates_the_tracking_id_of_a_new_visitor(self):
        request = tracked_request()
        assert TRACKING_ID_SESSION_KEY not in request.session
        assert tracker.record_event(request, "signup")
        assert TRACKING_ID_SESSION_KEY in request.session

    @pytest.mark.parametrize("user_agent", [*CRAWLER_USER_AGENTS[:50], ""])
    def test_record_event_crawler_records_nothing_and_gets_no_id(self, user_agent):
        request = tracked_request(user_agent=user_agent)
        assert not tracker.record_event(request, "signup")
        assert TRACKING_ID_SESSION_KEY not in request.session
        assert Event.objects.count() == 0

    @pytest.mark.parametrize("header", [{"dnt": "1"}, {"sec-gpc": "1"}])
    def test_record_event_opted_out_records_nothing(self, header):
        assert not tracker.record_event(tracked_request(**header), "signup")
        assert Event.objects.count() == 0

    def test_record_event_opt_out_ignored_when_not_respected(self, settings):
        settings.TRACKER_RESPECT_DNT = False
        assert tracker.record_event(tracked_request(dnt="1"), "signup")
        assert Event.objects.count() == 1

    def test_record_event_excluded_path_records_nothing(self, settings):
        settings.TRACKER_EXCLUDE_PATHS = [r"^/private/"]
        assert not tracker.record_event(tracked_request("/private/x/"), "signup")
        assert tracker.record_event(tracked_request("/public/"), "signup")
        assert Event.objects.count() == 1

    def test_record_event_without_the_middleware_records_nothing(self):
        request = RequestFactory().get("/", headers={"user-agent": BROWSER_UA})
        request.session = SessionStore()
        assert not tracker.record_event(request, "signup")
        assert Event.objects.count() == 0

    def test_record_event_bad_input_raises_even_untracked(self):
        request = tracked_request(user_agent="")
        with pytest.raises(ValueError, match="event name"):
            tracker.record_event(request, "bad\nname")
        with pytest.raises(ValueError, match="email"):
            tracker.record_event(request, "ok", props={"who": "a@b.example"})
        with pytest.raises(ValueError, match="Decimal"):
            tracker.record_event(request, "ok", revenue=9.99)

    def test_record_event_follows_the_transaction(self):
        request = tracked_request()
        with pytest.raises(RuntimeError), transaction.atomic():
            tracker.record_event(request, "rolled_back")
            raise RuntimeError("the site's write failed")
        with transaction.atomic():
            tracker.record_event(request, "committed")
        assert list(Event.objects.values_list("name", flat=True)) == ["committed"]


def same_origin_client() -> Client:
    """A browser that has viewed a page (so it has a tracked session)."""
    client = Client(headers={"user-agent": BROWSER_UA})
    assert client.get("/").status_code == 200
    return client


def post_event(client: Client, body, **headers):
    if not isinstance(body, bytes | str):
        body = orjson.dumps(body)
    headers.setdefault("sec-fetch-site", "same-origin")
    return client.post(
        "/t/event", data=body, content_type="text/plain;charset=UTF-8", headers=headers
    )


class EventEndpointTests:
    def test_event_endpoint_stores_a_same_origin_event(self):
        client = same_origin_client()
        body = {"name": "click: pricing", "props": {"href": "/pricing/"}, "path": "/about/"}
        response = post_event(client, body)
        assert response.status_code == 204
        event = Event.objects.get()
        assert (event.name, event.path, event.props, event.revenue) == (
            "click: pricing", "/about/", {"href": "/pricing/"}, None
        )  # fmt: skip
        assert event.tracking_id == Visit.objects.get().tracking_id

    def test_event_endpoint_origin_header_without_fetch_metadata(self):
        client = same_origin_client()
        response = post_event(
            client, {"name": "a"}, **{"sec-fetch-site": None, "origin": "http://testserver"}
        )
        assert response.status_code == 204
        assert Event.objects.count() == 1

    @pytest.mark.parametrize(
        "headers",
        [
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "same-site"},
            {"sec-fetch-site": "none"},
            {"sec-fetch-site": None, "origin": "https://evil.example"},
            {"sec-fetch-site": None, "origin": "null"},
            {"sec-fetch-site": None, "origin": "http://testserver.evil.example"},
            {"sec-fetch-site": None},
            {"sec-fetch-site": "cross-site", "origin": "http://testserver"},
        ],
    )
    def test_event_endpoint_cross_origin_refused(self, headers):
        client = same_origin_client()
        assert post_event(client, {"name": "forged"}, **headers).status_code == 403
        assert Event.objects.count() == 0

    def test_event_endpoint_csrf_still_enforced_elsewhere(self):
        client = Client(enforce_csrf_checks=True, headers={"user-agent": BROWSER_UA})
        response = client.post("/accounts/login/", {"username": "a", "password": "b"})
        assert response.status_code == 403

    def test_event_endpoint_without_tracked_session_stores_nothing(self):
        client = Client(headers={"user-agent": BROWSER_UA})
        response = post_event(client, {"name": "a"})
        assert response.status_code == 204
        assert Event.objects.count() == 0
        assert "sessionid" not in client.cookies  # and creates no session

    def test_event_endpoint_crawler_and_opt_out_store_nothing(self):
        client = same_origin_client()
        assert post_event(client, {"name": "a"}, dnt="1").status_code == 204
        crawler_headers = {"user-agent": CRAWLER_USER_AGENTS[0]}
        assert post_event(client, {"name": "a"}, **crawler_headers).status_code == 204
        assert Event.objects.count() == 0

    def test_event_endpoint_get_not_allowed(self):
        assert same_origin_client().get("/t/event").status_code == 405

    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"{not json",
            b"\xff\xfe",
            b"[]",
            b"null",
            b'"signup"',
            b"[" * 5000 + b"]" * 5000,
            {"name": ""},
            {"name": "x" * 65},
            {"name": "a\x00b"},
            {"name": "a\nb"},
            {"name": "<img src=x onerror=alert(1)>"},
            {"name": 12},
            {"props": {}},
            {"name": "a", "props": {"email": "x@y.example"}},
            {"name": "a", "props": {"phone": "0612345678"}},
            {"name": "a", "props": [1, 2]},
            {"name": "a", "props": {f"k{n}": "v" for n in range(11)}},
            {"name": "a", "props": {"v": "x" * 101}},
            {"name": "a", "props": {"v": "a\u0000b"}},
            {"name": "a", "revenue": "1000000"},
            {"name": "a", "path": "https://evil.example/"},
            {"name": "a", "path": "/a\x00b"},
            {"name": "a", "path": "/" + "x" * 600},
            {"name": "a", "path": 5},
            {"name": "a", "extra": "field"},
            b'{"name": "a", "name": "b", "props": {"k": 1e999}}',
            b'{"name": "a", "props": {"k": 123456789012345678901234567890}}',
        ],
    )
    def test_event_endpoint_hostile_body_400_nothing_stored(self, body):
        response = post_event(same_origin_client(), body)
        assert response.status_code == 400
        assert Event.objects.count() == 0

    def test_event_endpoint_huge_body_refused_unread(self):
        client = same_origin_client()
        body = orjson.dumps({"name": "a", "props": {"v": "x" * 100}, "pad": "y" * 10_000_000})
        assert post_event(client, body).status_code == 400
        exact = b'{"name":"a","path":"/' + b"x" * (EVENT_BODY_MAX_BYTES - 22) + b'"}'
        assert len(exact) == EVENT_BODY_MAX_BYTES + 1
        assert post_event(client, exact).status_code == 400
        assert Event.objects.count() == 0

    def test_event_endpoint_lying_content_length_reads_no_more_than_the_cap(self):
        client = same_origin_client()
        body = orjson.dumps({"name": "a", "path": "/" + "x" * 3000})
        response = client.post(
            "/t/event",
            data=body,
            content_type="text/plain",
            headers={"sec-fetch-site": "same-origin"},
            CONTENT_LENGTH="10",
        )
        assert response.status_code == 400
        assert Event.objects.count() == 0

    def test_event_endpoint_flood_429_and_nothing_more_stored(self):
        client = same_origin_client()
        statuses = [post_event(client, {"name": "flood"}).status_code for _ in range(100)]
        assert statuses[:EVENTS_PER_VISITOR_PER_MINUTE] == [204] * EVENTS_PER_VISITOR_PER_MINUTE
        assert set(statuses[EVENTS_PER_VISITOR_PER_MINUTE:]) == {429}
        assert Event.objects.count() == EVENTS_PER_VISITOR_PER_MINUTE
        # Another visitor is not held back by the first one's flood.
        assert post_event(same_origin_client(), {"name": "flood"}).status_code == 204

    @hypothesis_settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(body=st.binary(max_size=3000) | st.text(max_size=600).map(str.encode))
    def test_event_endpoint_any_body_never_500(self, body):
        client = same_origin_client()
        before = Event.objects.count()
        response = post_event(client, body)
        assert response.status_code in {204, 400}
        assert Event.objects.count() - before == (1 if response.status_code == 204 else 0)

    def test_event_endpoint_forged_session_cookie_stores_nothing(self):
        client = Client(headers={"user-agent": BROWSER_UA})
        client.cookies["sessionid"] = uuid.uuid4().hex
        assert post_event(client, {"name": "a"}).status_code == 204
        assert Event.objects.count() == 0
