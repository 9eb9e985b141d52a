"""generate_traffic writes plausible, seeded raw page views that aggregate like real ones."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import Min
from django.test import override_settings

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


def visitors_page_views() -> dict:
    """Each tracking id's page views in time order: (time, source, (browser, OS, device,
    country))."""
    rows = Visit.objects.values_list(
        "tracking_id",
        "visited_at",
        "referrer_host",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "browser",
        "os",
        "device",
        "country",
    )
    visitors = defaultdict(list)
    for tracking_id, visited_at, *source, browser, system, device, country in rows:
        visitors[tracking_id].append(
            (visited_at, tuple(source), (browser, system, device, country))
        )
    return {tracking_id: sorted(page_views) for tracking_id, page_views in visitors.items()}


def visits_split(page_views: list[tuple], *, timeout: int) -> list[list[tuple]]:
    """Split one visitor's page views into visits, as the metric definitions say: a gap longer
    than the timeout, or a page view carrying a source (referrer or any UTM field) other than
    its visit's, starts a new visit."""
    visits = [[page_views[0]]]
    for page_view in page_views[1:]:
        visited_at, source, _ = page_view
        visit = visits[-1]
        gap = (visited_at - visit[-1][0]).total_seconds()
        if gap > timeout or (any(source) and source != visit[0][1]):
            visits.append([page_view])
        else:
            visit.append(page_view)
    return visits


def gaps_seconds(visitors: dict) -> list[float]:
    return [
        (later[0] - earlier[0]).total_seconds()
        for page_views in visitors.values()
        for earlier, later in pairwise(page_views)
    ]


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
        countries = Counter(visits.values_list("country", flat=True))
        assert countries.most_common(1)[0][0] == "US"
        assert len(countries) >= 15 and "" in countries
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
        batches = model.row_batches(model.session_starts(200), flush=True)
        drawn = [visit_from_copy_row(row) for rows in batches for row in rows]
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


@pytest.mark.django_db
class ReturningVisitorsTests:
    def test_generate_some_visitors_return_some_often(self):
        traffic_generate(sessions=1500, days=14, seed=11, end=END, progress=False)

        timeout = settings.TRACKER_VISIT_TIMEOUT
        visits = [
            visits_split(page_views, timeout=timeout)
            for page_views in visitors_page_views().values()
        ]
        assert len(visits) == 1500
        returning = sum(len(visitor_visits) > 1 for visitor_visits in visits) / len(visits)
        assert 0.2 < returning < 0.4
        assert max(len(visitor_visits) for visitor_visits in visits) >= 4

    def test_generate_visitors_stay_within_cookie_age_and_window(self):
        traffic_generate(sessions=1500, days=14, seed=12, end=END, progress=False)

        cookie_age = timedelta(seconds=settings.SESSION_COOKIE_AGE)
        for page_views in visitors_page_views().values():
            first, last = page_views[0][0], page_views[-1][0]
            assert END - timedelta(days=14) <= first and last <= END
            assert last - first < cookie_age
            # Browser, system, device and country are the visitor's, on every visit.
            assert len({agent for _, _, agent in page_views}) == 1

    def test_generate_returns_come_later_from_fresh_sources(self):
        traffic_generate(sessions=1500, days=14, seed=13, end=END, progress=False)

        timeout = settings.TRACKER_VISIT_TIMEOUT
        returns = changed_source = 0
        for page_views in visitors_page_views().values():
            for earlier, later in pairwise(page_views):
                gap = (later[0] - earlier[0]).total_seconds()
                # A return comes an hour or more later; a page view within a visit, or after a
                # pause about as long as the timeout, carries no source.
                assert gap >= 3600 or not any(later[1])
                assert gap >= 3600 or gap < timeout + 60
            visits = visits_split(page_views, timeout=timeout)
            returns += len(visits) - 1
            changed_source += sum(visit[0][1] != visits[0][0][1] for visit in visits[1:])
        # Two draws from the referrer and campaign mixes differ about four times in five.
        assert changed_source > returns / 2 > 100

    def test_generate_pauses_around_the_visit_timeout(self):
        traffic_generate(sessions=1500, days=14, seed=14, end=END, progress=False)

        timeout = settings.TRACKER_VISIT_TIMEOUT
        gaps = gaps_seconds(visitors_page_views())
        assert any(timeout - 60 < gap <= timeout for gap in gaps)
        assert any(timeout < gap < timeout + 60 for gap in gaps)

    def test_generate_writes_returns_when_they_happen(self):
        """Rows are stored nearly in time order, as the tracker stores them: a return is not
        written with its visitor's first visit, days ahead of the rows around it."""
        traffic_generate(sessions=1500, days=14, seed=16, end=END, progress=False)

        latest = None
        for visited_at in Visit.objects.order_by("id").values_list("visited_at", flat=True):
            # Only a long visit's last pages, drawn with its start, run ahead of later rows.
            assert latest is None or visited_at > latest - timedelta(hours=3)
            latest = max(latest or visited_at, visited_at)

    @override_settings(TRACKER_VISIT_TIMEOUT=600, SESSION_COOKIE_AGE=2 * 86_400)
    def test_generate_reads_timeout_and_cookie_age_from_settings(self):
        traffic_generate(sessions=1500, days=14, seed=15, end=END, progress=False)

        visitors = visitors_page_views()
        gaps = gaps_seconds(visitors)
        assert any(540 < gap <= 600 for gap in gaps)
        assert any(600 < gap < 660 for gap in gaps)
        assert not any(1740 < gap < 1860 for gap in gaps)
        spans = [page_views[-1][0] - page_views[0][0] for page_views in visitors.values()]
        assert timedelta(days=1) < max(spans) < timedelta(days=2)
