"""generate_traffic writes plausible, seeded raw visits that aggregate like real ones."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from tests.tracker.rollup_reference import expected_rollups, stored_rollups
from tracker import rollups
from tracker.models import TrackedSession, Visit
from tracker.traffic import traffic_generate

END = datetime(2026, 5, 1, tzinfo=UTC)


def shape() -> list[tuple]:
    """The traffic without its random ids: what the seed must fix."""
    return sorted(
        Visit.objects.values_list("visited_at", "path", "browser", "os", "device", "referrer_host")
    )


@pytest.mark.django_db
class TrafficGenerateTests:
    def test_generate_rows_are_plausible(self):
        written = traffic_generate(sessions=400, days=3, seed=1, end=END, progress=False)

        visits = Visit.objects.all()
        assert written == visits.count() > 400
        assert len(set(visits.values_list("event_id", flat=True))) == written
        assert len(set(visits.values_list("tracking_id", flat=True))) == 400
        first = min(visits.values_list("visited_at", flat=True))
        assert first >= END - timedelta(days=3)
        paths = Counter(visits.values_list("path", flat=True))
        ranked = [count for _, count in paths.most_common()]
        assert ranked[0] > 5 * ranked[20]  # Zipf-like: a few pages get most views
        assert {"desktop", "mobile"} <= set(visits.values_list("device", flat=True))
        assert len(set(visits.values_list("browser", flat=True))) >= 4
        assert visits.exclude(referrer_host="").exists()
        assert visits.exclude(utm_campaign="").exists()

    def test_generate_sessions_have_bounces_and_long_tails(self):
        traffic_generate(sessions=500, days=2, seed=2, end=END, progress=False)
        rollups.visits_aggregate()

        pageviews = list(TrackedSession.objects.values_list("pageviews", flat=True))
        bounce_rate = sum(p == 1 for p in pageviews) / len(pageviews)
        assert 0.2 < bounce_rate < 0.5
        assert max(pageviews) >= 6
        assert stored_rollups() == expected_rollups()

    def test_generate_same_seed_same_shape_fresh_ids(self):
        traffic_generate(sessions=50, days=1, seed=3, end=END, progress=False)
        first_shape = shape()
        first_ids = set(Visit.objects.values_list("event_id", flat=True))
        Visit.objects.all().delete()

        traffic_generate(sessions=50, days=1, seed=3, end=END, progress=False)

        assert shape() == first_shape
        assert first_ids.isdisjoint(Visit.objects.values_list("event_id", flat=True))

    def test_generate_twice_adds_traffic(self):
        traffic_generate(sessions=30, days=1, seed=4, end=END, progress=False)
        once = Visit.objects.count()
        traffic_generate(sessions=30, days=1, seed=4, end=END, progress=False)
        assert Visit.objects.count() == 2 * once

    def test_command_generate_traffic_reports_rows(self, capsys):
        call_command("generate_traffic", sessions=120, days=2, seed=5, verbosity=0)

        out = capsys.readouterr().out
        assert f"Wrote {Visit.objects.count()} visits of 120 sessions" in out
        assert len(set(Visit.objects.values_list("tracking_id", flat=True))) == 120
