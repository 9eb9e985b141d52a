"""Filters (issue 23) against a plain-Python reference over the raw page views.

Random returning visitors (tests/dashboard/reference.py's generator, plus countries, events and
goal hits), aggregated by the product's aggregation; the reference splits the raw page views
into visits again, applies each filter from its definition and counts every figure of
stats.json, the CSV exports and the panels from those visits and raw rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import uuid
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from dashboard import filtered_queries
from dashboard.filters import IS, filters_parse
from tests.dashboard import reference
from tests.dashboard.conftest import HTMX, RANGE_QUERY, XSS_PATH, body
from tracker.models import Event, Goal, GoalHit, Visit
from tracker.rollups import visits_aggregate

pytestmark = pytest.mark.django_db

COUNTRIES = ["", "DE", "GB", "US", "FR"]
EVENT_NAMES = ["signup", "download", "Play video"]
FIELD_OF = {
    "entry": "entry_path",
    "exit": "exit_path",
    "referrer": "referrer_host",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "browser": "browser",
    "os": "os",
    "device": "device",
    "country": "country",
}
# The custom range the HTTP tests ask for (local days of a site on UTC) and its bounds.
RANGE = {"start": "2026-03-25", "end": "2026-03-29"}
START = dt.datetime(2026, 3, 25, tzinfo=dt.UTC)
END = dt.datetime(2026, 3, 30, tzinfo=dt.UTC)


def on(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, tzinfo=dt.UTC)


@dataclass
class Traffic:
    views: list[Visit]
    visits: list[reference.RefVisit]
    events: list[Event]
    hits: list[GoalHit]


def _owner(visits_of: dict, tracking_id: uuid.UUID, moment: dt.datetime):
    """The visit a moment belongs to: its visitor's that started last at or before it."""
    own = visits_of.get(tracking_id, [])
    position = bisect_right([visit.started_at for visit in own], moment) - 1
    return own[position] if position >= 0 else None


@pytest.fixture
def traffic(db, settings) -> Traffic:
    timeout = settings.TRACKER_VISIT_TIMEOUT
    rng = random.Random(23)
    views = reference.random_page_views(
        seed=23, visitor_count=70, start=on(22), days=9, timeout=timeout
    )
    for view in views:
        view.country = rng.choice(COUNTRIES)
    Visit.objects.bulk_create(views)
    visits_aggregate(batch_size=97)
    views = list(Visit.objects.all())
    visits = reference.split_visits(views, timeout=timeout)
    # Events at random moments of random visits, some after their visit's last page view.
    events = []
    for visit in rng.sample(visits, len(visits) // 2):
        for _ in range(rng.randrange(1, 4)):
            seconds = rng.uniform(0, visit.duration_seconds + 600)
            events.append(
                Event(
                    event_id=uuid.UUID(int=rng.getrandbits(128)),
                    tracking_id=visit.tracking_id,
                    occurred_at=visit.started_at + dt.timedelta(seconds=seconds),
                    name=rng.choice(EVENT_NAMES),
                    path=visit.entry_path,
                )
            )
    events = Event.objects.bulk_create(events)
    signup = Goal.objects.create(name="Signup", kind="page", match="/signup/")
    played = Goal.objects.create(name="Played", kind="event", match="Play video")
    hits = [
        GoalHit(
            goal=signup, raw_id=view.id, tracking_id=view.tracking_id, reached_at=view.visited_at
        )
        for view in views
        if view.path == "/signup/"
    ] + [
        GoalHit(
            goal=played,
            raw_id=event.id,
            tracking_id=event.tracking_id,
            reached_at=event.occurred_at,
        )
        for event in events
        if event.name == "Play video"
    ]
    hits = GoalHit.objects.bulk_create(hits)
    for hit in hits:
        hit.goal_name = hit.goal.name
    return Traffic(views=views, visits=visits, events=events, hits=hits)


class Reference:
    """Every filtered figure, from the raw rows."""

    def __init__(self, traffic: Traffic, filters):
        self.traffic = traffic
        self.visits_of = defaultdict(list)
        for visit in traffic.visits:
            self.visits_of[visit.tracking_id].append(visit)
        for own in self.visits_of.values():
            own.sort(key=lambda visit: (visit.started_at, visit.number))
        self.events_in = defaultdict(list)
        for event in traffic.events:
            owner = _owner(self.visits_of, event.tracking_id, event.occurred_at)
            if owner is not None:
                self.events_in[id(owner)].append(event)
        self.goals_in = defaultdict(set)
        for hit in traffic.hits:
            owner = _owner(self.visits_of, hit.tracking_id, hit.reached_at)
            if owner is not None:
                self.goals_in[id(owner)].add(hit.goal_name)
        self.filters = filters
        self.chosen = [visit for visit in traffic.visits if self.passes(visit)]

    def _matches(self, item, values: list[str]) -> bool:
        if item.operator == "contains":
            return any(item.value.lower() in value.lower() for value in values)
        return item.value in values

    def passes(self, visit) -> bool:
        for item in self.filters:
            if item.dimension in FIELD_OF:
                values = [visit.value(FIELD_OF[item.dimension])]
            elif item.dimension == "page":
                values = [view.path for view in visit.views]  # the visit's own page views
            elif item.dimension == "goal":
                values = list(self.goals_in[id(visit)])
            else:
                values = [event.name for event in self.events_in[id(visit)]]
            if self._matches(item, values) == (item.operator == "not"):
                return False
        return True

    def in_range(self, start, end):
        return reference.in_range(self.chosen, start=start, end=end)

    def headline(self, start, end) -> dict:
        return reference.headline(self.chosen, self.traffic.views, start=start, end=end)

    def top_pages(self, start, end) -> list[dict]:
        pageviews, people = Counter(), defaultdict(set)
        for visit in self.in_range(start, end):
            for view in visit.views:
                pageviews[view.path] += 1
                people[view.path].add(view.tracking_id)
        rows = [
            {"path": path, "pageviews": count, "visitors": len(people[path])}
            for path, count in pageviews.items()
        ]
        return sorted(rows, key=lambda row: (-row["pageviews"], row["path"]))

    def events(self, start, end) -> list[dict]:
        counts, people = Counter(), defaultdict(set)
        for visit in self.in_range(start, end):
            for event in self.events_in[id(visit)]:
                counts[event.name] += 1
                people[event.name].add(event.tracking_id)
        rows = [
            {"name": name, "visitors": len(people[name]), "count": count}
            for name, count in counts.items()
        ]
        return sorted(rows, key=lambda row: (-row["visitors"], -row["count"], row["name"]))

    def countries(self, start, end) -> list[dict]:
        rows = reference.countries(self.chosen, start=start, end=end).values()
        return sorted(rows, key=lambda row: (-row["visits"], row["country"]))

    def breakdown(self, start, end, dimension: str) -> list[dict]:
        rows = reference.breakdown(self.chosen, start=start, end=end, dimension=dimension).values()
        return sorted(rows, key=lambda row: (-row["visits"], row["value"]))

    def visit_rows(self, start, end) -> list[list]:
        chosen = sorted(
            self.in_range(start, end),
            key=lambda visit: (visit.started_at, visit.tracking_id, visit.number),
        )
        return [list(visit.row(filtered_queries.VISIT_FIELDS).values()) for visit in chosen]


def change(current, previous):
    if current is None or previous is None:
        return None
    if previous == 0:
        return 0.0 if current == 0 else None
    return (current - previous) / previous


# Each dimension, "is not", "contains" (any case), two and three at once, and empty results.
CASES = [
    {"entry": "/pricing/"},
    {"exit": "/signup/"},
    {"page": "/blog/a/"},
    {"referrer": "news.example.com"},
    {"referrer": ""},
    {"utm_source": "newsletter"},
    {"utm_medium": "social"},
    {"utm_campaign": "spring"},
    {"browser": "Firefox"},
    {"os": "iOS"},
    {"device": "mobile"},
    {"country": "de"},
    {"goal": "Signup"},
    {"goal": "Played"},
    {"event": "download"},
    {"browser__not": "Chrome"},
    {"page__not": "/docs/"},
    {"event__not": "signup"},
    {"goal__not": "Signup"},
    {"referrer__not": ""},
    {"country__not": ""},
    {"entry__contains": "BLOG"},
    {"referrer__contains": "example.ORG"},
    {"page__contains": "pric"},
    {"utm_campaign__contains": "spr"},
    {"exit__contains": "/"},
    {"referrer": "news.example.com", "device": "desktop"},
    {"page": "/pricing/", "event": "Play video"},
    {"page": "/pricing/", "browser__not": "Firefox", "country": "GB"},
    {"goal": "Signup", "event__not": "download", "utm_source__contains": "news"},
    {"os__not": "Linux", "page__contains": "blog", "exit__not": "/"},
    {"browser": "Netscape"},
    {"goal": "No such goal"},
    {"event": "nobody did this"},
    {"device": "tablet", "os": "iOS"},
]


def _query(case: dict, **extra) -> str:
    return urlencode({**RANGE, **case, **extra})


class FilteredFiguresTests:
    @pytest.mark.parametrize("case", CASES, ids=[_query(case) for case in CASES])
    def test_stats_json_and_csvs_equal_reference(self, staff_client, traffic, case):
        expected = Reference(traffic, filters_parse(_as_querydict(case)))
        stats = staff_client.get(f"/dashboard/api/stats.json?{_query(case)}").json()

        previous_start = START - (END - START)
        current = expected.headline(START, END)
        previous = expected.headline(previous_start, START)
        for key, value in current.items():
            assert stats[key] == value, key
            assert stats["previous"][key] == previous[key], key
            assert stats["change"][key] == change(value, previous[key]), key
        assert stats["sessions"] == current["visitors"]
        in_range = expected.in_range(START, END)
        assert stats["pages_per_visit_histogram"] == reference.pages_per_visit(
            in_range, start=START, end=END
        )
        assert stats["visits_per_visitor_histogram"] == reference.visits_per_visitor(
            in_range, start=START, end=END
        )
        series = reference.series(
            in_range, traffic.views, start=START, end=END, hourly=False, zone="UTC"
        )
        assert stats["timeseries"] == [{**point, "t": point["t"].isoformat()} for point in series]
        assert stats["top_pages"] == expected.top_pages(START, END)[:10]
        assert stats["countries"] == expected.countries(START, END)
        assert stats["events"] == expected.events(START, END)

        sessions = _csv(staff_client, "sessions", case)
        assert sessions[0] == filtered_queries.VISIT_FIELDS
        assert sessions[1:] == [
            [_cell(value) for value in row] for row in expected.visit_rows(START, END)
        ]
        pages = _csv(staff_client, "pages", case)
        assert pages[1:] == [
            [row["path"], str(row["pageviews"]), str(row["visitors"])]
            for row in expected.top_pages(START, END)
        ]
        events = _csv(staff_client, "events", case)
        assert events[1:] == [
            [row["name"], str(row["visitors"]), str(row["count"])]
            for row in expected.events(START, END)
        ]

    def test_cases_are_not_trivial(self, traffic):
        """Most cases keep some visits and drop others, else they would prove little."""
        sizes = [
            len(Reference(traffic, filters_parse(_as_querydict(case))).in_range(START, END))
            for case in CASES
        ]
        total = len(reference.in_range(traffic.visits, start=START, end=END))
        assert sum(1 for size in sizes if 0 < size < total) >= len(CASES) - 5
        assert sizes.count(0) >= 3


class FilteredPanelsTests:
    @pytest.mark.parametrize("case", CASES[::3], ids=[_query(case) for case in CASES[::3]])
    @pytest.mark.parametrize(
        ("start", "end"),
        [(on(27, 6), on(30, 18)), (on(28, 23), on(29, 1)), (on(2), on(4))],
    )
    def test_panels_equal_reference(self, traffic, case, start, end):
        filters = filters_parse(_as_querydict(case))
        expected = Reference(traffic, filters)
        span = {"filters": filters, "start": start, "end": end}
        overview = filtered_queries.visit_overview(**span, limit=None)
        breakdowns = filtered_queries.overview_breakdowns(overview, list(FIELD_OF.values()))
        for dimension in FIELD_OF.values():
            assert breakdowns[dimension] == expected.breakdown(start, end, dimension), dimension
        assert filtered_queries.overview_countries(overview) == expected.countries(start, end)
        in_range = expected.in_range(start, end)
        assert filtered_queries.overview_pages_histogram(overview) == (
            reference.pages_per_visit(in_range, start=start, end=end)
        )
        assert filtered_queries.overview_visitors_histogram(overview) == (
            reference.visits_per_visitor(in_range, start=start, end=end)
        )
        headline = filtered_queries.headline_filtered(**span, overview=overview)
        assert headline["current"] == expected.headline(start, end)
        busiest = filtered_queries.busiest_filtered(**span, limit=10)
        ranked = sorted(
            expected.in_range(start, end),
            key=lambda visit: (-visit.pageviews, -visit.duration_seconds, visit.tracking_id),
        )
        assert [row["pageviews"] for row in busiest] == [visit.pageviews for visit in ranked][:10]
        hourly = end - start <= dt.timedelta(days=2)
        series = reference.series(
            expected.in_range(start, end),
            traffic.views,
            start=start,
            end=end,
            hourly=hourly,
            zone="UTC",
        )
        assert filtered_queries.timeseries_filtered(**span) == series
        first_visits = [visit for visit in expected.in_range(start, end) if visit.number == 1]
        assert overview["first"]["visits"] == len(first_visits)
        table = filtered_queries.visitors_page_filtered(**span, page=1, per_page=1000)
        assert {row["tracking_id"] for row in table} == {v.tracking_id for v in first_visits}


def _as_querydict(case: dict):
    from django.http import QueryDict

    return QueryDict(urlencode(case))


def _cell(value) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _csv(client, name: str, case: dict) -> list[list[str]]:
    response = client.get(f"/dashboard/export/{name}.csv?{_query(case)}")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(body(response))))
    return [[cell[1:] if cell.startswith("'") else cell for cell in row] for row in rows]


BAD = [
    ("browser", "x" * 51, "at most 50"),
    ("referrer", "a\x01b", "control characters"),
    ("device", "toaster", "device is one of"),
    ("country", "Germany", "two-letter"),
    ("country", "1x", "two-letter"),
    ("browser__like", "Chrome", "operator"),
    ("device__contains", "mob", "not __contains"),
    ("browzer__not", "Chrome", "not a filter"),
    ("entry__contains", "", "some text"),
    ("goal", "", "goal name"),
    ("event", "x" * 65, "at most 64"),
    ("page", "/\x7f", "control characters"),
]


class BadFilterTests:
    @pytest.mark.parametrize(("name", "value", "message"), BAD)
    @pytest.mark.parametrize(
        "url",
        [
            "/dashboard/",
            "/dashboard/api/stats.json",
            "/dashboard/export/sessions.csv",
            "/dashboard/export/pages.csv",
            "/dashboard/export/events.csv",
        ],
    )
    def test_bad_filter_is_400_with_message(self, staff_client, name, value, message, url):
        response = staff_client.get(url, {name: value})
        assert response.status_code == 400
        assert message in body(response)

    def test_htmx_bad_filter_is_plain_400(self, staff_client):
        response = staff_client.get("/dashboard/", {"os": "\x00"}, headers={"HX-Request": "true"})
        assert response.status_code == 400
        assert "control characters" in body(response)

    def test_too_many_filters_is_400(self, staff_client):
        query = "&".join(f"page=/p{number}/" for number in range(11))
        response = staff_client.get(f"/dashboard/api/stats.json?{query}")
        assert response.status_code == 400
        assert "At most 10 filters" in response.json()["error"]


class ParseTests:
    def test_parse_orders_and_dedupes(self):
        filters = filters_parse(_as_querydict({"os": "iOS", "browser": "Chrome"}))
        assert [(f.dimension, f.operator, f.value) for f in filters] == [
            ("browser", IS, "Chrome"),
            ("os", IS, "iOS"),
        ]

    def test_other_parameters_are_left_alone(self):
        assert filters_parse(_as_querydict({"range": "7d", "compare": "1", "path": "/"})) == ()


class FilterLinksTests:
    def test_rows_link_to_their_filter_and_chips_remove_it(self, staff_client, known_data):
        html = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}"))
        assert 'href="?start=2026-01-10&amp;end=2026-01-12&amp;referrer=search.example"' in html
        assert 'href="?start=2026-01-10&amp;end=2026-01-12&amp;browser=Firefox"' in html
        assert 'href="?start=2026-01-10&amp;end=2026-01-12&amp;page=%2Fpricing%2F"' in html
        assert 'href="?start=2026-01-10&amp;end=2026-01-12&amp;country=DE"' in html

        filtered = body(
            staff_client.get(f"/dashboard/?{RANGE_QUERY}&referrer=search.example&os__not=iOS")
        )
        assert 'data-filter="referrer"' in filtered and 'data-filter="os__not"' in filtered
        # Each chip links to the URL without it; other links keep both filters.
        assert 'href="?start=2026-01-10&amp;end=2026-01-12&amp;os__not=iOS"' in filtered
        assert 'href="?start=2026-01-10&amp;end=2026-01-12&amp;referrer=search.example"' in filtered
        assert "referrer=search.example&amp;os__not=iOS&amp;browser=Chrome" in filtered

    def test_hostile_values_are_escaped_everywhere(self, staff_client, known_data):
        hostile = urlencode(
            {"page": XSS_PATH, "referrer__not": "<b>evil</b>.example", "entry__contains": '"><s>'}
        )
        html = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}&{hostile}"))
        assert "<img src=x" not in html and "<b>evil" not in html and '"><s>' not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html

    def test_add_filter_form_redirects_to_named_parameter(self, staff_client, known_data):
        query = urlencode(
            {
                **dict(part.split("=") for part in RANGE_QUERY.split("&")),
                "_dimension": "referrer",
                "_operator": "__contains",
                "_value": "search",
            }
        )
        response = staff_client.get(f"/dashboard/?{query}")
        assert response.status_code == 302
        assert response["Location"].endswith(
            "?start=2026-01-10&end=2026-01-12&referrer__contains=search"
        )
        htmx = staff_client.get(f"/dashboard/?{query}", headers=HTMX)
        assert htmx.status_code == 200
        assert htmx["HX-Push-Url"].endswith("&referrer__contains=search")

    def test_path_beside_filters_becomes_entry(self, staff_client, known_data):
        stats = staff_client.get(
            f"/dashboard/api/stats.json?{RANGE_QUERY}&path=/pricing/&browser=Chrome"
        ).json()
        assert stats["filters"] == [
            {"dimension": "browser", "operator": "is", "value": "Chrome"},
            {"dimension": "entry", "operator": "is", "value": "/pricing/"},
        ]
        assert stats["visits"] == 2  # S5's visit and S6's second
