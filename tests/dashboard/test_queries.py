"""Ranges that cut days in two read whole days from the daily rollups and the edges hourly."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.db.models import Sum

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
