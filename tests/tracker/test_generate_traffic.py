"""generate_traffic writes plausible, seeded raw visits that aggregate like real ones."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db.models import Min

from tests.tracker.rollup_reference import expected_rollups, stored_rollups
from tracker import rollups
from tracker.ids import uuid7_time
from tracker.models import TrackedSession, Visit
from tracker.traffic import TrafficModel, traffic_generate, visit_from_copy_row

END = datetime(2026, 5, 1, tzinfo=UTC)


def shape() -> list[tuple]:
    """The traffic without its random ids: what the seed must fix."""
    return sorted(
        Visit.objects.values_list("visited_at", "path", "browser", "os", "device", "referrer_host")
    )


def to_millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def session_starts() -> list[dict]:
    """Each stored session's tracking id, first visit time and first visit row id."""
    return list(
        Visit.objects.values("tracking_id").annotate(
            started_at=Min("visited_at"), first_id=Min("id")
        )
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

    def test_generate_writes_sessions_in_start_order(self):
        traffic_generate(sessions=300, days=2, seed=6, end=END, progress=False)

        sessions = sorted(session_starts(), key=lambda session: session["first_id"])
        started = [session["started_at"] for session in sessions]
        assert len(started) == 300
        assert started == sorted(started)
        # A session's visits follow its start, in time order.
        visits = Visit.objects.order_by("id").values_list("tracking_id", "visited_at")
        last_seen = {}
        for tracking_id, visited_at in visits:
            assert visited_at >= last_seen.get(tracking_id, visited_at)
            last_seen[tracking_id] = visited_at

    def test_generate_ids_made_for_visit_time_and_session_start(self):
        traffic_generate(sessions=300, days=2, seed=7, end=END, progress=False)

        visits = sorted(Visit.objects.values_list("event_id", "visited_at"))
        assert {event_id.version for event_id, _ in visits} == {7}
        assert [uuid7_time(event_id) for event_id, _ in visits] == [
            to_millisecond(visited_at) for _, visited_at in visits
        ]
        by_event_id = [visited_at for _, visited_at in visits]
        assert by_event_id == sorted(by_event_id)

        sessions = sorted(session_starts(), key=lambda session: session["tracking_id"])
        assert [uuid7_time(session["tracking_id"]) for session in sessions] == [
            to_millisecond(session["started_at"]) for session in sessions
        ]
        by_tracking_id = [session["started_at"] for session in sessions]
        assert by_tracking_id == sorted(by_tracking_id)

    def test_generate_keeps_daily_rhythm(self):
        traffic_generate(sessions=2000, days=2, seed=8, end=END, progress=False)

        starts = [session["started_at"] for session in session_starts()]
        hours = Counter(start.hour for start in starts)
        afternoon = sum(hours[hour] for hour in range(12, 17))
        night = sum(hours[hour] for hour in range(5))
        assert afternoon > 4 * night > 0
        days = Counter(start.date() for start in starts)
        assert sorted(days) == [(END - timedelta(days=2)).date(), (END - timedelta(days=1)).date()]
        assert max(days.values()) < 1.2 * min(days.values())

    def test_generate_stores_what_the_model_draws(self):
        """On PostgreSQL the binary COPY rows must read back as the values they encode."""
        traffic_generate(sessions=200, days=2, seed=10, end=END, progress=False)

        model = TrafficModel(seed=10, days=2, end=END)
        drawn = [
            visit_from_copy_row(row)
            for start in model.session_starts(200)
            for row in model.session_rows(start)
        ]
        fields = [field.name for field in Visit._meta.fields if not field.name.endswith("id")]
        stored = sorted(Visit.objects.values_list(*fields))
        assert stored == sorted(tuple(getattr(visit, field) for field in fields) for visit in drawn)
        assert {"status_code", "response_ms", "visited_at", "utm_campaign"} <= set(fields)

    def test_command_generate_traffic_reports_rows(self, capsys):
        call_command("generate_traffic", sessions=120, days=2, seed=5, verbosity=0)

        out = capsys.readouterr().out
        assert f"Wrote {Visit.objects.count()} visits of 120 sessions" in out
        assert len(set(Visit.objects.values_list("tracking_id", flat=True))) == 120


class SessionStartsTests:
    def test_session_starts_chronological_within_the_days(self):
        model = TrafficModel(seed=9, days=3, end=END)
        starts = list(model.session_starts(5000))

        assert len(starts) == 5000
        assert starts == sorted(starts)
        first, end = (END - timedelta(days=3)).timestamp() * 1e6, END.timestamp() * 1e6
        assert first <= starts[0] and starts[-1] < end
