"""The events panel, stats.json's events, events.csv, the props drill-down and the timeline's
events, against the known data set with events added, aggregated for real."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections import defaultdict
from decimal import Decimal

import pytest

from dashboard.charts import short_id
from tests.dashboard.conftest import HTMX, RANGE_QUERY, S0, S1, S5, S6, XSS_PATH, at, body
from tracker.event_rollups import events_aggregate
from tracker.models import Event

pytestmark = pytest.mark.django_db

RANGE_START, RANGE_END = at(10, 0), at(13, 0)
TIMES = "\u00d7"  # the multiplication sign of "signup ×2"  # noqa: RUF003


def event(tracking_id: uuid.UUID, occurred_at: dt.datetime, name: str, **fields) -> Event:
    return Event(
        event_id=uuid.uuid4(),
        tracking_id=tracking_id,
        occurred_at=occurred_at,
        name=name,
        path=fields.pop("path", "/"),
        **fields,
    )


@pytest.fixture
def known_events(known_data):
    events = Event.objects.bulk_create(
        [
            event(S0, at(8, 12), "signup"),  # the previous period
            event(S1, at(10, 10, 2), "signup", path="/signup/", props={"plan": "pro"}),
            event(S1, at(10, 10, 3), "outbound", props={"href": "https://docs.example/"}),
            event(S1, at(11, 10, 3), "outbound", props={"href": "https://docs.example/"}),
            event(S5, at(12, 8, 3), "signup", props={"plan": "free"}),
            event(S5, at(12, 8, 4), "purchase", revenue=Decimal("19.90"),
                  props={"note": XSS_PATH}),
            event(S6, at(11, 14, 6), "outbound", props={"href": "https://blog.example/"}),
            event(S6, at(11, 15, 0, 30), "signup", props={"plan": "pro"}),
            event(S6, at(11, 15, 0, 40), "signup", props={"plan": "pro"}),
        ]
    )  # fmt: skip
    events_aggregate()
    return events


def reference(events: list[Event], *, start: dt.datetime, end: dt.datetime) -> list[dict]:
    counts: dict[str, int] = defaultdict(int)
    visitors: dict[str, set] = defaultdict(set)
    for row in events:
        if start <= row.occurred_at < end:
            counts[row.name] += 1
            visitors[row.name].add(row.tracking_id)
    rows = [{"name": n, "visitors": len(visitors[n]), "count": counts[n]} for n in counts]
    return sorted(rows, key=lambda row: (-row["visitors"], -row["count"], row["name"]))


class EventFiguresTests:
    def test_stats_json_events_equal_reference(self, staff_client, known_events):
        figures = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}").json()
        expected = reference(known_events, start=RANGE_START, end=RANGE_END)
        assert figures["events"] == expected
        assert expected == [
            {"name": "signup", "visitors": 3, "count": 4},
            {"name": "outbound", "visitors": 2, "count": 3},
            {"name": "purchase", "visitors": 1, "count": 1},
        ]

    def test_stats_json_events_of_one_day(self, staff_client, known_events):
        figures = staff_client.get("/dashboard/api/stats.json?start=2026-01-11&end=2026-01-11")
        assert figures.json()["events"] == reference(
            known_events, start=at(11, 0), end=at(12, 0)
        )

    def test_stats_json_events_empty_range(self, staff_client, known_events):
        figures = staff_client.get("/dashboard/api/stats.json?start=2026-02-01&end=2026-02-02")
        assert figures.json()["events"] == []

    def test_events_csv_equals_reference(self, staff_client, known_events):
        response = staff_client.get(f"/dashboard/export/events.csv?{RANGE_QUERY}")
        assert 'filename="events-2026-01-10-2026-01-12.csv"' in response["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(body(response))))
        expected = reference(known_events, start=RANGE_START, end=RANGE_END)
        assert rows == [["name", "visitors", "count"]] + [
            [row["name"], str(row["visitors"]), str(row["count"])] for row in expected
        ]

    def test_new_event_aggregation_shows_at_once(self, staff_client, known_events):
        url = f"/dashboard/api/stats.json?{RANGE_QUERY}"
        assert staff_client.get(url).json()["events"][0]["count"] == 4
        Event.objects.bulk_create([event(S5, at(12, 9), "signup")])
        events_aggregate()
        assert staff_client.get(url).json()["events"][0]["count"] == 5


class EventPanelTests:
    def test_events_panel_lists_names_with_props_links(self, staff_client, known_events):
        html = body(
            staff_client.get(f"/dashboard/?{RANGE_QUERY}", headers={**HTMX, "HX-Target": "events"})
        )
        assert 'id="events"' in html
        for name in ("signup", "outbound", "purchase"):
            assert f"name={name}" in html
        assert "events.csv" in html

    def test_event_props_show_values_with_visitors(self, staff_client, known_events):
        response = staff_client.get(f"/dashboard/events/props/?{RANGE_QUERY}&name=signup")
        html = body(response)
        assert response.status_code == 200
        assert html.count("<tr style") == 2  # plan=pro (2 visitors, 3 times) and plan=free
        assert "pro</td><td class=\"num\">2</td><td class=\"num\">3</td>" in html

    def test_event_props_escape_hostile_values(self, staff_client, known_events):
        html = body(staff_client.get(f"/dashboard/events/props/?{RANGE_QUERY}&name=purchase"))
        assert XSS_PATH not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html

    @pytest.mark.parametrize("name", ["", "a\x00b", "x" * 65, "<b>"])
    def test_event_props_bad_name_400(self, staff_client, known_events, name):
        response = staff_client.get(f"/dashboard/events/props/?{RANGE_QUERY}", {"name": name})
        assert response.status_code == 400

    def test_event_props_staff_only(self, member_client, known_events):
        assert member_client.get("/dashboard/events/props/?name=signup").status_code == 403


class VisitorsTableEventsTests:
    @pytest.mark.parametrize("filters", ["", "&browser=Chrome"])  # rollups, then visit by visit
    def test_each_visitor_row_counts_its_events_by_name(self, staff_client, known_events, filters):
        headers = {**HTMX, "HX-Target": "sessions"}
        text = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}{filters}", headers=headers))
        rows = {
            short_id(tracking_id): row
            for row in text.split("<tr>")[2:]
            for tracking_id in (S0, S1, S5, S6)
            if f"<code>{short_id(tracking_id)}</code>" in row
        }
        expected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in known_events:
            expected[short_id(row.tracking_id)][row.name] += 1
        assert set(rows) == {short_id(S1), short_id(S5), short_id(S6)}  # S0: before the range
        for short, row in rows.items():
            cell = row.split('<td class="label">')[2].split("</td>")[0]
            names = [span.split("<")[0] for span in cell.split('<span class="event-count">')[1:]]
            ranked = sorted(expected[short].items(), key=lambda item: (-item[1], item[0]))
            assert names == [f"{name} {TIMES}{n}" if n > 1 else name for name, n in ranked]
        assert '<span class="event-count">signup \u00d72</span>' in rows[short_id(S6)]


class TimelineEventsTests:
    def test_timeline_shows_each_visits_events_inline(self, staff_client, known_events):
        html = body(staff_client.get(f"/dashboard/sessions/{S6}/"))
        first, second = html.split('id="visit-2"')
        assert "outbound" in first and "signup" not in first.split('id="visit-1"')[1]
        assert second.count('class="event-name">signup<') == 2
        assert "plan=pro" in second

    def test_timeline_revenue_in_currency(self, staff_client, known_events, settings):
        html = body(staff_client.get(f"/dashboard/sessions/{S5}/"))
        assert "19.9" in html and settings.TRACKER_CURRENCY in html
        assert XSS_PATH not in html
