"""Visitors, visits and their histograms over any range equal a plain-Python count of the raw
page views, split into visits by the reference sessionizer, whatever order they arrived in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from dashboard import queries
from tests.dashboard import reference
from tests.tracker.rollup_reference import random_visits, reference_visits
from tracker import rollups
from tracker.models import Visit

pytestmark = pytest.mark.django_db


def load_shuffled(*, seed: int, start: datetime, sessions: int = 120, hours: int = 72) -> list:
    """Insert random page views in shuffled chunks, aggregating after each (late arrivals)."""
    views = random_visits(seed=seed, sessions=sessions, start=start, hours=hours)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(views)), 5))
    for begin, end in zip([0, *cuts], [*cuts, len(views)], strict=True):
        Visit.objects.bulk_create(views[begin:end])
        rollups.visits_aggregate(batch_size=rng.choice([7, 50, 10_000]))
    return list(Visit.objects.all())


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
        visits = reference_visits(views)

        for start, end in random_ranges(seed, first=first, count=12):
            span = {"start": start, "end": end}
            assert queries.headline_totals(**span)["current"] == reference.headline(
                visits, views, **span
            ), span
            assert queries.visits_per_visitor_histogram(**span) == reference.visits_per_visitor(
                visits, **span
            )
            assert queries.pages_per_visit_histogram(**span) == reference.pages_per_visit(
                visits, **span
            )
            top = queries.top_pages(**span, limit=None)
            assert {row["path"]: row for row in top} == reference.top_pages(views, **span)
            countries = queries.top_countries(**span, limit=100)
            assert {row["country"]: row for row in countries} == reference.countries(
                visits, **span
            )

    def test_top_pages_limited_keep_exact_visitors(self):
        first = datetime(2026, 5, 4, 21, 0, tzinfo=UTC)
        views = load_shuffled(seed=44, start=first)
        span = {"start": first, "end": first + timedelta(days=4)}
        expected = reference.top_pages(views, **span)

        top = queries.top_pages(**span, limit=3)

        assert len(top) == 3
        assert all(row == expected[row["path"]] for row in top)

    def test_top_countries_limited_keep_exact_visitors(self):
        first = datetime(2026, 5, 4, 21, 0, tzinfo=UTC)
        views = load_shuffled(seed=46, start=first, sessions=200)
        span = {"start": first + timedelta(hours=30), "end": first + timedelta(days=3)}
        expected = reference.countries(reference_visits(views), **span)

        top = queries.top_countries(**span, limit=2)

        ranked = sorted(expected.values(), key=lambda row: (-row["visits"], row["country"]))
        assert top == ranked[:2]
        assert any(row["visitors"] < row["visits"] for row in top)

    def test_entry_page_filter_counts_visitors_of_those_visits(self):
        first = datetime(2026, 5, 4, 21, 0, tzinfo=UTC)
        views = load_shuffled(seed=45, start=first)
        visits = reference_visits(views)
        span = {"start": first, "end": first + timedelta(days=2)}

        for path in ["/", "/blog/", "/nowhere/"]:
            assert queries.headline_totals(**span, path=path)["current"] == reference.headline(
                visits, views, **span, path=path
            )

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
        assert points == reference.series(
            reference_visits(views), views, start=start, end=end, hourly=False, zone=zone_name
        )

    def test_hourly_visitors_match_reference(self):
        first = datetime(2026, 5, 4, 21, 0, tzinfo=UTC)
        views = load_shuffled(seed=48, start=first, hours=30)
        start, end = first, first + timedelta(hours=36)

        points = queries.timeseries(start=start, end=end)

        assert len(points) == 36
        assert points == reference.series(
            reference_visits(views), views, start=start, end=end, hourly=True, zone="UTC"
        )
