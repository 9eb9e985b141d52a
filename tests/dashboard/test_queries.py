"""Ranges that cut days in two read whole days from the daily rollups and the edges hourly."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

import pytest
from django.db.models import Sum
from django.utils import timezone

from dashboard import queries
from tests.dashboard.conftest import at
from tests.tracker.rollup_reference import random_visits
from tracker.models import PageDaily, PageHourly, SessionDaily, SessionHourly, Visit
from tracker.rollups import visits_aggregate

pytestmark = pytest.mark.django_db

DIMENSIONS = ["entry_path", "exit_path", "referrer_host", "browser", "device", "pages"]
# From 06:00 on the 10th to 18:00 on the 13th: two partial days around two whole ones.
RANGES = [
    (at(10, 6), at(13, 18)),
    (at(10, 0), at(13, 0)),  # whole days only
    (at(11, 5), at(11, 20)),  # inside one day
    (at(9, 23), at(10, 1)),  # across one midnight, no whole day
]


@pytest.fixture
def four_days(db):
    """Random sessions starting every few hours over four days, aggregated for real."""
    visits = []
    for index, start in enumerate(at(10, 0) + dt.timedelta(hours=7 * n) for n in range(14)):
        visits += random_visits(seed=100 + index, sessions=12, start=start)
    Visit.objects.bulk_create(visits)
    visits_aggregate()
    return visits


def hourly_top_pages(start, end) -> list[dict]:
    rows = (
        PageHourly.objects.filter(hour__gte=start, hour__lt=end)
        .values("path")
        .annotate(pageviews=Sum("pageviews"), sessions=Sum("sessions"))
        .order_by("-pageviews", "path")
    )
    return list(rows)


def hourly_breakdown(start, end, dimension) -> Counter:
    rows = (
        SessionHourly.objects.filter(hour__gte=start, hour__lt=end, dimension=dimension)
        .values_list("value")
        .annotate(total=Sum("sessions"))
    )
    return Counter(dict(rows))


def hourly_totals(start, end, *, path) -> dict[str, int]:
    """The headline sums of [start, end) straight from the hourly rollups."""
    entries = {"dimension": "entry_path", "value": path} if path else {"dimension": "all"}
    sums = SessionHourly.objects.filter(hour__gte=start, hour__lt=end, **entries).aggregate(
        sessions=Sum("sessions", default=0),
        pageviews=Sum("pageviews", default=0),
        bounces=Sum("bounces", default=0),
    )
    if path:
        sums["pageviews"] = PageHourly.objects.filter(
            hour__gte=start, hour__lt=end, path=path
        ).aggregate(total=Sum("pageviews", default=0))["total"]
    return sums


def hourly_series(start, end, *, path, daily) -> dict[dt.datetime, list[int]]:
    """[pageviews, sessions] per bucket (local day or hour) summed from the hourly rollups."""
    if path:
        pageviews = PageHourly.objects.filter(path=path)
        sessions = SessionHourly.objects.filter(dimension="entry_path", value=path)
    else:
        pageviews = sessions = SessionHourly.objects.filter(dimension="all")
    series = defaultdict(lambda: [0, 0])
    for position, rows, field in ((0, pageviews, "pageviews"), (1, sessions, "sessions")):
        for hour, value in rows.filter(hour__gte=start, hour__lt=end).values_list("hour", field):
            if daily:
                hour = timezone.localtime(hour).replace(hour=0, minute=0, second=0)
            series[hour][position] += value
    return series


class RollupRangeTests:
    def test_daily_rows_are_used(self, four_days):
        assert PageDaily.objects.count() > 0
        assert SessionDaily.objects.filter(dimension="all").count() == 4  # 10th to 13th

    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_top_pages_equal_hourly_sums(self, four_days, start, end):
        top = queries.top_pages(start=start, end=end, limit=None)
        assert top == hourly_top_pages(start, end)
        assert queries.top_pages(start=start, end=end, limit=3) == top[:3]

    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_top_pages_with_path_filter(self, four_days, start, end):
        expected = [row for row in hourly_top_pages(start, end) if row["path"] == "/pricing/"]
        assert queries.top_pages(start=start, end=end, limit=10, path="/pricing/") == expected

    @pytest.mark.parametrize("path", [None, "/pricing/"])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_headline_equals_hourly_sums(self, four_days, start, end, path):
        headline = queries.headline_totals(start=start, end=end, path=path)
        previous_start = start - (end - start)
        for period, low, high in (("current", start, end), ("previous", previous_start, start)):
            expected = hourly_totals(low, high, path=path)
            sessions = expected["sessions"]
            assert headline[period]["sessions"] == sessions
            assert headline[period]["pageviews"] == expected["pageviews"]
            bounce_rate = round(expected["bounces"] / sessions, 4) if sessions else None
            assert headline[period]["bounce_rate"] == bounce_rate

    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_histogram_equals_hourly_sums(self, four_days, start, end):
        histogram = queries.pages_per_session_histogram(start=start, end=end)
        assert [row["bucket"] for row in histogram] == queries.PAGES_BUCKETS
        got = {row["bucket"]: row["sessions"] for row in histogram if row["sessions"]}
        assert got == dict(hourly_breakdown(start, end, "pages"))

    # London's days are UTC days in January (daily rollups read); Paris's are not (hours summed).
    @pytest.mark.parametrize("zone", ["UTC", "Europe/London", "Europe/Paris"])
    @pytest.mark.parametrize("path", [None, "/pricing/"])
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_timeseries_equals_hourly_sums(self, four_days, settings, start, end, path, zone):
        settings.TIME_ZONE = zone
        points = queries.timeseries(start=start, end=end, path=path)
        daily = end - start > queries.HOURLY_UP_TO
        expected = hourly_series(start, end, path=path, daily=daily)
        got = {
            p["t"]: [p["pageviews"], p["sessions"]]
            for p in points
            if p["pageviews"] or p["sessions"]
        }
        assert got == dict(expected)
        assert set(expected) <= {point["t"] for point in points}

    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_breakdown_equals_hourly_sums(self, four_days, start, end):
        breakdown = queries.dimension_breakdown(
            start=start, end=end, dimensions=DIMENSIONS, limit=100
        )
        for dimension in DIMENSIONS:
            expected = hourly_breakdown(start, end, dimension)
            got = {row["value"]: row["sessions"] for row in breakdown[dimension]}
            assert got == dict(expected), dimension
            sessions = [row["sessions"] for row in breakdown[dimension]]
            assert sessions == sorted(sessions, reverse=True)

    def test_breakdown_limit_keeps_the_top(self, four_days):
        start, end = RANGES[0]
        top = queries.dimension_breakdown(start=start, end=end, dimensions=DIMENSIONS, limit=2)
        everything = queries.dimension_breakdown(
            start=start, end=end, dimensions=DIMENSIONS, limit=100
        )
        for dimension in DIMENSIONS:
            assert top[dimension] == everything[dimension][:2]
