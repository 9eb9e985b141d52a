"""Every dashboard query against a plain-Python reference over the raw page views.

Random returning visitors over a week around a daylight-saving change, inserted shuffled and
aggregated in small batches (so late page views re-split visits already stored); ranges that
cut days in two, whole days, hours inside a day and across midnight, and an empty one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import pytest
from django.utils import timezone

from dashboard import queries
from tests.dashboard import reference
from tracker.models import Visit
from tracker.rollups import visits_aggregate

pytestmark = pytest.mark.django_db

DIMENSIONS = [
    "entry_path",
    "exit_path",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "browser",
    "os",
    "device",
    "pages",
]
PATH = "/pricing/"


def on(day: int, hour: int = 0) -> dt.datetime:
    """A moment of March 2026, whose last Sunday (the 29th) moves Europe to summer time."""
    return dt.datetime(2026, 3, day, hour, tzinfo=dt.UTC)


RANGES = [
    (on(27, 6), on(30, 18)),  # partial days around whole ones, across the change of time
    (on(27), on(30)),  # whole days only
    (on(28, 5), on(28, 20)),  # inside one day
    (on(28, 23), on(29, 1)),  # across one midnight, no whole day
    (on(2), on(4)),  # nothing there, nor before
]


@dataclass
class Traffic:
    views: list[Visit]
    visits: list[reference.RefVisit]


@pytest.fixture
def traffic(db, settings) -> Traffic:
    timeout = settings.TRACKER_VISIT_TIMEOUT
    Visit.objects.bulk_create(
        reference.random_page_views(seed=7, visitor_count=90, start=on(24), days=7, timeout=timeout)
    )
    visits_aggregate(batch_size=97)
    views = list(Visit.objects.all())
    return Traffic(views=views, visits=reference.split_visits(views, timeout=timeout))


def periods(start, end):
    """The range and the period of the same length before it, as headline_totals pairs them."""
    return {"current": (start, end), "previous": (start - (end - start), start)}


class ReferenceDataTests:
    def test_data_has_the_shapes_that_break_things(self, traffic, settings):
        """The random data exercises what the figures are about (else they prove little)."""
        limit = dt.timedelta(seconds=settings.TRACKER_VISIT_TIMEOUT)
        visits_made = {}
        for visit in traffic.visits:
            visits_made[visit.tracking_id] = max(
                visit.number, visits_made.get(visit.tracking_id, 0)
            )
        assert max(visits_made.values()) >= 11
        assert max(visit.pageviews for visit in traffic.visits) >= 21
        gaps = [
            (earlier, later)
            for visit in traffic.visits
            for earlier, later in zip(visit.views, visit.views[1:], strict=False)
        ]
        assert any(later.visited_at - earlier.visited_at == limit for earlier, later in gaps)
        assert any(later.visited_at == earlier.visited_at for earlier, later in gaps)
        # Visits started by a new source alone: no long gap before them.
        by_visitor = {(visit.tracking_id, visit.number): visit for visit in traffic.visits}
        split_by_source = [
            visit
            for visit in traffic.visits
            if visit.number > 1
            and visit.started_at - by_visitor[(visit.tracking_id, visit.number - 1)].ended_at
            <= limit
        ]
        assert split_by_source


class HeadlineTests:
    @pytest.mark.parametrize("path", [None, PATH])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_headline_equals_reference(self, traffic, start, end, path):
        headline = queries.headline_totals(start=start, end=end, path=path)
        for name, (low, high) in periods(start, end).items():
            expected = reference.headline(
                traffic.visits, traffic.views, start=low, end=high, path=path
            )
            assert headline[name] == expected, name

    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_change_compares_with_the_previous_period(self, traffic, start, end):
        headline = queries.headline_totals(start=start, end=end)
        for key, now in headline["current"].items():
            was = headline["previous"][key]
            if now is None or was is None or (was == 0 and now != 0):
                assert headline["change"][key] is None
            elif was == 0:
                assert headline["change"][key] == 0.0
            else:
                assert headline["change"][key] == pytest.approx((now - was) / was)

    @pytest.mark.parametrize("path", [None, PATH])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_visit_count(self, traffic, start, end, path):
        expected = len(reference.in_range(traffic.visits, start=start, end=end, path=path))
        assert queries.visit_count(start=start, end=end, path=path) == expected

    def test_visitors_fewer_than_visits_when_visitors_return(self, traffic):
        start, end = RANGES[0]
        current = queries.headline_totals(start=start, end=end)["current"]
        assert 0 < current["visitors"] < current["visits"]
        assert current["returning_visits"] > 0


class HistogramTests:
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_pages_per_visit(self, traffic, start, end):
        expected = reference.pages_per_visit(traffic.visits, start=start, end=end)
        assert queries.pages_per_visit_histogram(start=start, end=end) == expected

    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_visits_per_visitor(self, traffic, start, end):
        expected = reference.visits_per_visitor(traffic.visits, start=start, end=end)
        assert queries.visits_per_visitor_histogram(start=start, end=end) == expected
        visits = queries.visit_count(start=start, end=end)
        got = queries.visits_per_visitor_histogram(start=start, end=end, visits=visits)
        assert got == expected

    def test_visits_per_visitor_reaches_the_top_bucket(self, traffic):
        start, end = RANGES[0]
        histogram = queries.visits_per_visitor_histogram(start=start, end=end)
        assert [row["bucket"] for row in histogram] == ["1", "2", "3", "4-5", "6-10", "11+"]
        assert histogram[-1]["visitors"] >= 1


class TimeseriesTests:
    # London's days are UTC days before the 29th (daily rollups read) but not after; Paris's
    # never are (hours summed); both have a 23-hour day.
    @pytest.mark.parametrize("zone", ["UTC", "Europe/London", "Europe/Paris"])
    @pytest.mark.parametrize("path", [None, PATH])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_timeseries_equals_reference(self, traffic, settings, start, end, path, zone):
        settings.TIME_ZONE = zone
        hourly = end - start <= queries.HOURLY_UP_TO
        expected = reference.series(
            traffic.visits,
            traffic.views,
            start=start,
            end=end,
            path=path,
            hourly=hourly,
            zone=zone,
        )
        assert queries.timeseries(start=start, end=end, path=path) == expected

    def test_whole_utc_days_in_london_winter(self, traffic, settings):
        """Local days that are UTC days read the daily rollups: the same figures."""
        settings.TIME_ZONE = "Europe/London"
        start, end = on(24), on(28)
        expected = reference.series(
            traffic.visits, traffic.views, start=start, end=end, hourly=False, zone="Europe/London"
        )
        assert queries.timeseries(start=start, end=end) == expected


class TopPagesTests:
    @pytest.mark.parametrize("path", [None, PATH])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_top_pages_equal_reference(self, traffic, start, end, path):
        rows = queries.top_pages(start=start, end=end, limit=None, path=path)
        expected = reference.top_pages(traffic.views, start=start, end=end, path=path)
        assert {row["path"]: row for row in rows} == expected
        assert len(rows) == len(expected)
        pageviews = [row["pageviews"] for row in rows]
        assert pageviews == sorted(pageviews, reverse=True)

    def test_limit_keeps_the_top(self, traffic):
        start, end = RANGES[0]
        everything = queries.top_pages(start=start, end=end, limit=None)
        assert queries.top_pages(start=start, end=end, limit=3) == everything[:3]


class BreakdownTests:
    @pytest.mark.parametrize("path", [None, PATH])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_breakdown_equals_reference(self, traffic, start, end, path):
        breakdown = queries.dimension_breakdown(
            start=start, end=end, dimensions=DIMENSIONS, limit=100, path=path
        )
        for dimension in DIMENSIONS:
            expected = reference.breakdown(
                traffic.visits, start=start, end=end, dimension=dimension, path=path
            )
            got = {row["value"]: row for row in breakdown[dimension]}
            assert got == expected, dimension
            visits = [row["visits"] for row in breakdown[dimension]]
            assert visits == sorted(visits, reverse=True)

    def test_limit_keeps_the_top(self, traffic):
        start, end = RANGES[0]
        top = queries.dimension_breakdown(start=start, end=end, dimensions=DIMENSIONS, limit=2)
        everything = queries.dimension_breakdown(
            start=start, end=end, dimensions=DIMENSIONS, limit=100
        )
        for dimension in DIMENSIONS:
            assert top[dimension] == everything[dimension][:2]


def busiest_reference(traffic, *, start, end, limit, path=None) -> list[dict]:
    chosen = reference.in_range(traffic.visits, start=start, end=end, path=path)
    chosen.sort(key=lambda v: (-v.pageviews, -v.duration_seconds, v.tracking_id, v.number))
    return [visit.row(queries.VISIT_FIELDS) for visit in chosen[:limit]]


class VisitListTests:
    @pytest.mark.parametrize("path", [None, PATH])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_busiest_visits(self, traffic, start, end, path):
        expected = busiest_reference(traffic, start=start, end=end, limit=10, path=path)
        assert queries.busiest_visits(start=start, end=end, limit=10, path=path) == expected
        # The histogram's bound skips short visits without changing the answer.
        histogram = queries.pages_per_visit_histogram(start=start, end=end)
        got = queries.busiest_visits(start=start, end=end, limit=10, path=path, histogram=histogram)
        assert got == expected

    @pytest.mark.parametrize("path", [None, PATH])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_visits_for_export(self, traffic, start, end, path):
        chosen = reference.in_range(traffic.visits, start=start, end=end, path=path)
        chosen.sort(key=lambda visit: (visit.started_at, visit.tracking_id, visit.number))
        expected = [tuple(visit.row(queries.VISIT_FIELDS).values()) for visit in chosen]
        assert list(queries.visits_for_export(start=start, end=end, path=path)) == expected

    @pytest.mark.parametrize("path", [None, PATH])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_new_visitors(self, traffic, start, end, path):
        expected = reference.new_visitors(traffic.visits, start=start, end=end, path=path)
        assert queries.new_visitor_count(start=start, end=end, path=path) == len(expected)
        pages = [
            queries.visitors_page(start=start, end=end, page=page, per_page=7, path=path)
            for page in range(1, 3 + len(expected) // 7)
        ]
        assert [row for page in pages for row in page] == expected
        assert pages[-1] == []


class LiveTests:
    def test_live_counts_visitors_of_the_last_five_minutes(self, traffic):
        now = traffic.views[0].visited_at + dt.timedelta(minutes=2)
        window = [view for view in traffic.views if now - queries.LIVE_WINDOW <= view.visited_at]
        expected = {view.tracking_id for view in window if view.visited_at <= now}
        assert queries.live_visitors(now=now) == len(expected) >= 1


def steps_of(group) -> list[tuple]:
    return [(step.visited_at, step.path, step.status_code) for step in group.steps]


class TimelineTests:
    def test_groups_page_views_by_visit(self, traffic):
        by_visitor = {}
        for visit in traffic.visits:
            by_visitor.setdefault(visit.tracking_id, []).append(visit)
        regular = max(by_visitor.values(), key=len)
        for own in [regular, *list(by_visitor.values())[:20]]:
            own.sort(key=lambda visit: visit.number)
            timeline = queries.session_timeline(tracking_id=own[0].tracking_id)
            assert timeline.summary == reference.visitors(own)[own[0].tracking_id]
            assert [group.summary["number"] for group in timeline.visits] == [
                visit.number for visit in own
            ]
            for group, visit in zip(timeline.visits, own, strict=True):
                assert {key: group.summary[key] for key in queries.VISIT_FIELDS} == visit.row(
                    queries.VISIT_FIELDS
                )
                assert steps_of(group) == [
                    (view.visited_at, view.path, view.status_code) for view in visit.views
                ]
                gaps = [step.seconds_on_page for step in group.steps]
                assert gaps[-1] is None
                assert all(gap >= 0 for gap in gaps[:-1])
            assert not timeline.pruned

    def test_page_views_not_aggregated_yet_come_last(self, traffic):
        visit = traffic.visits[0]
        late = visit.ended_at + dt.timedelta(hours=5)
        Visit.objects.create(
            event_id=uuid.uuid4(),
            tracking_id=visit.tracking_id,
            visited_at=late,
            path="/late/",
            status_code=200,
            response_ms=3,
        )
        timeline = queries.session_timeline(tracking_id=visit.tracking_id)
        assert timeline.visits[-1].summary is None
        assert steps_of(timeline.visits[-1]) == [(late, "/late/", 200)]
        assert all(group.summary for group in timeline.visits[:-1])

    def test_unknown_visitor(self, db):
        assert queries.session_timeline(tracking_id=uuid.UUID(int=12345)) is None

    def test_visitor_not_aggregated_at_all(self, db):
        tracking_id = uuid.UUID(int=77)
        moment = timezone.now()
        Visit.objects.create(
            event_id=uuid.uuid4(),
            tracking_id=tracking_id,
            visited_at=moment,
            path="/",
            status_code=200,
            response_ms=3,
        )
        timeline = queries.session_timeline(tracking_id=tracking_id)
        assert timeline.summary is None
        assert [group.summary for group in timeline.visits] == [None]
        assert steps_of(timeline.visits[0]) == [(moment, "/", 200)]


class StatsTests:
    @pytest.mark.parametrize("path", [None, PATH])
    def test_stats_from_rollups_equal_reference(self, traffic, path):
        start, end = RANGES[0]
        stats = queries.stats_from_rollups(start=start, end=end, path=path)
        current = reference.headline(traffic.visits, traffic.views, start=start, end=end, path=path)
        for key, value in current.items():
            assert stats[key] == value, key
        assert stats["sessions"] == current["visitors"]
        assert stats["visits_per_visitor_histogram"] == (
            reference.visits_per_visitor(traffic.visits, start=start, end=end)
        )
        assert stats["pages_per_visit_histogram"] == (
            reference.pages_per_visit(traffic.visits, start=start, end=end)
        )
        series = reference.series(
            traffic.visits, traffic.views, start=start, end=end, path=path, hourly=False, zone="UTC"
        )
        assert stats["timeseries"] == [{**point, "t": point["t"].isoformat()} for point in series]
