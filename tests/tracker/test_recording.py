from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.http import HttpResponse
from django.test import Client, RequestFactory
from hypothesis import given
from hypothesis import strategies as st

from tests.tracker.user_agents import BROWSER_UA
from tracker.classify import classify_user_agent
from tracker.ids import RANDOM_MASK, uuid7_time
from tracker.models import HOST_MAX_LENGTH, PATH_MAX_LENGTH, UTM_MAX_LENGTH, Visit
from tracker.recording import (
    TRACKING_ID_SESSION_KEY,
    clean_text,
    referrer_host,
    tracking_id_for,
    visit_build,
)


def build(path: str = "/", session: SessionStore | None = None, **meta) -> dict:
    request = RequestFactory().get(path, headers={"user-agent": BROWSER_UA}, **meta)
    request.session = SessionStore() if session is None else session
    return visit_build(
        request=request,
        response=HttpResponse(status=200),
        agent=classify_user_agent(BROWSER_UA),
        elapsed_ms=7,
    )


class CleanTextTests:
    @given(st.text(), st.integers(min_value=1, max_value=600))
    def test_clean_text_any_input_storable_and_capped(self, value, max_length):
        cleaned = clean_text(value, max_length=max_length)
        assert len(cleaned) <= max_length
        assert "\x00" not in cleaned
        cleaned.encode("utf-8")

    def test_clean_text_replaces_nul_and_surrogates(self):
        assert clean_text("a\x00b\ud800c", max_length=10) == "a\ufffdb?c"

    @given(st.text(st.characters(max_codepoint=127)), st.integers(min_value=1, max_value=60))
    def test_clean_text_ascii_keeps_printable_replaces_controls(self, value, max_length):
        expected = "".join(char if char.isprintable() else "\ufffd" for char in value)
        assert clean_text(value, max_length=max_length) == expected[:max_length]


class ReferrerHostTests:
    @pytest.mark.parametrize(
        ("referrer", "expected"),
        [
            ("https://news.ycombinator.com/item?id=1", "news.ycombinator.com"),
            ("https://WWW.Example.ORG:8443/path", "www.example.org"),
            ("https://testserver/about/", ""),
            ("http://testserver:8000/", ""),
            ("", ""),
            ("not a url", ""),
            ("http://[::1", ""),
            ("https://<script>alert(1)</script>/", "<script>alert(1)<"),
        ],
    )
    def test_referrer_host_cases(self, referrer, expected):
        assert referrer_host(referrer=referrer, site_host="testserver") == expected

    def test_referrer_host_capped(self):
        host = "a" * 1000 + ".com"
        assert len(referrer_host(referrer=f"https://{host}/", site_host="x")) == HOST_MAX_LENGTH


class TrackingIdTests:
    def test_tracking_id_created_then_kept(self):
        session = SessionStore()
        first = tracking_id_for(session)
        assert session[TRACKING_ID_SESSION_KEY] == str(first)
        assert tracking_id_for(session) == first

    @pytest.mark.parametrize("form", [str, lambda value: str(value).upper(), lambda v: v.hex])
    def test_tracking_id_read_back_from_any_uuid_text(self, form):
        tracking_id = uuid.uuid4()
        session = SessionStore()
        session[TRACKING_ID_SESSION_KEY] = form(tracking_id)
        kept = tracking_id_for(session)
        assert (kept, str(kept), hash(kept)) == (tracking_id, str(tracking_id), hash(tracking_id))
        assert session[TRACKING_ID_SESSION_KEY] == form(tracking_id)

    def test_tracking_id_invalid_value_replaced(self):
        session = SessionStore()
        session[TRACKING_ID_SESSION_KEY] = "<script>"
        assert isinstance(tracking_id_for(session), uuid.UUID)
        assert session[TRACKING_ID_SESSION_KEY] != "<script>"


class VisitBuildTests:
    def test_visit_build_normalises_path_and_utm(self):
        visit = build(
            "/pricing/?utm_source=hn&utm_medium=social&utm_campaign=launch&secret=1",
            HTTP_REFERER="https://news.ycombinator.com/",
        )
        assert visit["path"] == "/pricing/"
        assert (visit["utm_source"], visit["utm_medium"], visit["utm_campaign"]) == (
            "hn",
            "social",
            "launch",
        )
        assert visit["referrer_host"] == "news.ycombinator.com"
        assert (visit["browser"], visit["os"], visit["device"]) == ("Chrome", "Linux", "desktop")
        assert visit["status_code"] == 200
        assert visit["response_ms"] == 7
        assert visit["visited_at"].utcoffset().total_seconds() == 0
        assert "secret" not in str(visit)

    def test_visit_build_caps_lengths(self):
        visit = build("/" + "p" * 10_000 + "?utm_source=" + "s" * 500)
        assert len(visit["path"]) == PATH_MAX_LENGTH
        assert len(visit["utm_source"]) == UTM_MAX_LENGTH

    def test_visit_build_fresh_event_ids(self):
        assert build()["event_id"] != build()["event_id"]

    def test_visit_build_forked_workers_draw_different_event_ids(self):
        """Web workers are forks of one process: were their generators alike, two page views
        served in the same instant would share an event id, and the drain would keep one."""

        def next_random_parts() -> str:
            return repr([build()["event_id"].int & RANDOM_MASK for _ in range(3)])

        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the forked worker sends its next event ids' random bits, then exits
            try:
                os.write(writer, next_random_parts().encode())
            finally:
                os._exit(0)
        os.close(writer)
        with os.fdopen(reader) as received:
            forked = received.read()
        os.waitpid(pid, 0)
        assert forked.startswith("[")
        assert forked != next_random_parts()  # this process's next ones

    def test_visit_build_stores_no_identifying_fields(self):
        visit = build("/", REMOTE_ADDR="203.0.113.9")
        assert set(visit) == {
            "event_id", "tracking_id", "visited_at", "path", "utm_source", "utm_medium",
            "utm_campaign", "referrer_host", "browser", "os", "device", "country",
            "status_code", "response_ms",
        }  # fmt: skip
        assert "203.0.113.9" not in str(visit)
        assert BROWSER_UA not in str(visit)


class TimeOrderedIdsTests:
    def test_successive_visits_event_ids_sort_in_visit_order(self):
        session = SessionStore()
        visits = [build(f"/page-{number}/", session=session) for number in range(50)]

        event_ids = [visit["event_id"] for visit in visits]
        assert sorted(event_ids) == event_ids
        assert {event_id.version for event_id in event_ids} == {7}
        for visit in visits:
            made_before = visit["visited_at"] - uuid7_time(visit["event_id"])
            assert timedelta(0) <= made_before < timedelta(seconds=1)

    def test_new_tracking_id_time_ordered_and_kept(self):
        session = SessionStore()
        first = build(session=session)["tracking_id"]
        assert first.version == 7
        assert build(session=session)["tracking_id"] == first
        assert tracking_id_for(SessionStore()) > first

    def test_tracking_id_stored_uuid4_still_used(self):
        session = SessionStore()
        session[TRACKING_ID_SESSION_KEY] = str(existing := uuid.uuid4())
        assert build(session=session)["tracking_id"] == existing

    @pytest.mark.django_db
    def test_stored_visits_event_ids_sort_in_visit_order(self, settings):
        settings.TRACKER_SINK = "direct"
        client = Client(headers={"user-agent": BROWSER_UA})
        for path in ["/", "/about/", "/", "/about/", "/", "/about/"]:
            assert client.get(path).status_code == 200

        in_visit_order = list(Visit.objects.order_by("visited_at", "id").values_list("id"))
        assert list(Visit.objects.order_by("event_id").values_list("id")) == in_visit_order
        assert len(in_visit_order) == 6
        tracking_ids = set(Visit.objects.values_list("tracking_id", flat=True))
        assert [tracking_id.version for tracking_id in tracking_ids] == [7]
