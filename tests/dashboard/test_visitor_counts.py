"""Visitors, visits and their histograms over any range equal a plain-Python count of the raw
page views, split into visits by the reference sessionizer, whatever order they arrived in."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from dashboard import queries
from tests.tracker.rollup_reference import pages_bucket, random_visits, reference_visits
from tracker import rollups
from tracker.models import Visit

pytestmark = pytest.mark.django_db

VISITS_BUCKETS = [("1", 1, 1), ("2", 2, 2), ("3", 3, 3), ("4-5", 4, 5), ("6-10", 6, 10)]


def load_shuffled(*, seed: int, start: datetime, sessions: int = 120, hours: int = 72) -> list:
    """Insert random page views in shuffled chunks, aggregating after each (late arrivals)."""
    views = random_visits(seed=seed, sessions=sessions, start=start, hours=hours)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(views)), 5))
    for begin, end in zip([0, *cuts], [*cuts, len(views)], strict=True):
        Visit.objects.bulk_create(views[begin:end])
        rollups.visits_aggregate(batch_size=rng.choice([7, 50, 10_000]))
    return list(Visit.objects.all())


def visits_bucket(count: int) -> str:
    for label, low, high in VISITS_BUCKETS:
        if low <= count <= high:
            return label
    return "11+"


def reference_figures(views: list, *, start: datetime, end: datetime, path: str | None = None):
    """Every figure of a range, counted from the raw page views alone."""
    visits = [
        visit
        for visit in reference_visits(views)
        if start <= visit.started_at < end and (path is None or visit.first.path == path)
    ]
    per_visitor = Counter(visit.tracking_id for visit in visits)
    page_visitors = defaultdict(set)
    page_views = Counter()
    for view in views:
        if start <= view.visited_at < end:
            page_visitors[view.path].add(view.tracking_id)
            page_views[view.path] += 1
    histogram = Counter(visits_bucket(count) for count in per_visitor.values())
    pages = Counter(pages_bucket(len(visit.views)) for visit in visits)
    return {
        "visitors": len(per_visitor),
        "visits": len(visits),
        "pageviews": sum(len(visit.views) for visit in visits),
        "returning_visits": sum(visit.number > 1 for visit in visits),
        "bounces": sum(len(visit.views) == 1 for visit in visits),
        "duration": sum(
            (visit.views[-1].visited_at - visit.started_at) // timedelta(seconds=1)
            for visit in visits
        ),
        "visits_histogram": {label: histogram[label] for label, *_ in VISITS_BUCKETS}
        | {"11+": histogram["11+"]},
        "pages_histogram": {bucket: pages[bucket] for bucket in queries.PAGES_BUCKETS},
        "top_pages": {p: (page_views[p], len(page_visitors[p])) for p in page_views},
    }


def random_ranges(seed: int, *, first: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """Hour-aligned ranges of one hour to five days, some reaching past the data."""
    rng = random.Random(seed)
    ranges = []
    for _ in range(count):
        start = first + timedelta(hours=rng.randrange(-6, 80))
        ranges.append((start, start + timedelta(hours=rng.choice([1, 5, 24, 30, 49, 120]))))
    return ranges


class VisitorCountTests:
    @pytest.mark.parametrize("seed", [41, 42, 43])
    def test_range_figures_match_reference(self, seed):
        first = datetime(2026, 5, 4, 21, 0, tzinfo=UTC)
        views = load_shuffled(seed=seed, start=first)

        for start, end in random_ranges(seed, first=first, count=12):
            expected = reference_figures(views, start=start, end=end)
            headline = queries.headline_totals(start=start, end=end)["current"]
            histogram = queries.visits_per_visitor_histogram(start=start, end=end)
            pages = queries.pages_per_visit_histogram(start=start, end=end)
            top = queries.top_pages(start=start, end=end, limit=None)

            assert headline["visitors"] == expected["visitors"], (start, end)
            assert headline["visits"] == expected["visits"]
            assert headline["pageviews"] == expected["pageviews"]
            assert headline["returning_visits"] == expected["returning_visits"]
            visits = expected["visits"]
            assert headline["bounce_rate"] == (
                round(expected["bounces"] / visits, 4) if visits else None
            )
            assert headline["avg_visit_seconds"] == (
                round(expected["duration"] / visits, 1) if visits else None
            )
            assert {row["bucket"]: row["visitors"] for row in histogram} == expected[
                "visits_histogram"
            ]
            assert {row["bucket"]: row["visits"] for row in pages} == expected["pages_histogram"]
            assert {row["path"]: (row["pageviews"], row["visitors"]) for row in top} == expected[
                "top_pages"
            ]

    def test_top_pages_limited_keep_exact_visitors(self):
        first = datetime(2026, 5, 4, 21, 0, tzinfo=UTC)
        views = load_shuffled(seed=44, start=first)
        start, end = first, first + timedelta(days=4)
        expected = reference_figures(views, start=start, end=end)["top_pages"]

        top = queries.top_pages(start=start, end=end, limit=3)

        assert len(top) == 3
        for row in top:
            assert (row["pageviews"], row["visitors"]) == expected[row["path"]]

    def test_entry_page_filter_counts_visitors_of_those_visits(self):
        first = datetime(2026, 5, 4, 21, 0, tzinfo=UTC)
        views = load_shuffled(seed=45, start=first)
        start, end = first, first + timedelta(days=2)

        for path in ["/", "/blog/", "/nowhere/"]:
            expected = reference_figures(views, start=start, end=end, path=path)
            headline = queries.headline_totals(start=start, end=end, path=path)["current"]
            assert headline["visitors"] == expected["visitors"]
            assert headline["visits"] == expected["visits"]

    def test_empty_range_counts_nothing(self):
        load_shuffled(seed=46, start=datetime(2026, 5, 4, 21, 0, tzinfo=UTC))
        start = datetime(2027, 1, 1, tzinfo=UTC)

        headline = queries.headline_totals(start=start, end=start + timedelta(days=7))["current"]
        histogram = queries.visits_per_visitor_histogram(start=start, end=start + timedelta(days=7))

        assert (headline["visitors"], headline["visits"], headline["bounce_rate"]) == (0, 0, None)
        assert all(row["visitors"] == 0 for row in histogram)


class VisitorTimeseriesTests:
    @pytest.mark.parametrize(
        ("zone_name", "first"),
        [
            # Paris goes to summer time on the 29th, and back to winter time on the 25th.
            ("Europe/Paris", datetime(2026, 3, 27, 20, 0, tzinfo=UTC)),
            ("Europe/Paris", datetime(2026, 10, 23, 20, 0, tzinfo=UTC)),
            # Local days are UTC days: whole days come from the daily rollups.
            ("UTC", datetime(2026, 5, 4, 20, 0, tzinfo=UTC)),
        ],
    )
    def test_daily_visitors_match_reference(self, settings, zone_name, first):
        settings.TIME_ZONE = zone_name
        views = load_shuffled(seed=47, start=first)
        with timezone.override(zone_name):
            zone = timezone.get_current_timezone()
            start = datetime(2026, first.month, first.day, tzinfo=zone)
            end = start + timedelta(days=5)
            # Local midnights: a day of 23 or 25 hours in the middle.
            start = timezone.make_aware(datetime(start.year, start.month, start.day), zone)
            end = timezone.make_aware(datetime(end.year, end.month, end.day), zone)

            points = queries.timeseries(start=start, end=end)

        assert len(points) == 5
        for point in points:
            day_start = point["t"]
            day_end = timezone.make_aware(
                datetime.combine(day_start.date() + timedelta(days=1), datetime.min.time()), zone
            )
            expected = reference_figures(views, start=day_start, end=day_end)
            assert (point["visitors"], point["visits"], point["pageviews"]) == (
                expected["visitors"],
                expected["visits"],
                expected["pageviews"],
            ), day_start

    def test_hourly_visitors_match_reference(self):
        first = datetime(2026, 5, 4, 21, 0, tzinfo=UTC)
        views = load_shuffled(seed=48, start=first, hours=30)
        start, end = first, first + timedelta(hours=36)

        points = queries.timeseries(start=start, end=end)

        assert len(points) == 36
        for point in points:
            expected = reference_figures(
                views, start=point["t"], end=point["t"] + timedelta(hours=1)
            )
            assert (point["visitors"], point["visits"]) == (
                expected["visitors"],
                expected["visits"],
            )
