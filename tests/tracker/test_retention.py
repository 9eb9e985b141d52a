"""Expired sessions are cleared and their analytics kept; only old, aggregated raw rows go."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from importlib import import_module
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sessions.backends.file import SessionStore as FileSessionStore
from django.contrib.sessions.models import Session
from django.test import override_settings
from django.utils import timezone

from tests.tracker.rollup_reference import expected_rollups, stored_rollups
from tracker import retention, rollups
from tracker.models import AggregationState, PageHourly, TrackedSession, Visit

ENGINES = {
    "db": "django.contrib.sessions.backends.db",
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "file": "django.contrib.sessions.backends.file",
}


def visit(*, visited_at, tracking_id=None, path="/") -> Visit:
    return Visit(
        event_id=uuid.uuid4(),
        tracking_id=tracking_id or uuid.uuid4(),
        visited_at=visited_at,
        path=path,
        status_code=200,
        response_ms=5,
    )


def django_session(engine: str, *, expired: bool) -> None:
    """Create a Django session holding a tracking id, as the tracker does."""
    store = import_module(engine).SessionStore()
    store["tracking_id"] = str(uuid.uuid4())
    store.set_expiry(timezone.now() - timedelta(minutes=1) if expired else 3600)
    store.save()


def django_session_count(engine: str, file_path: Path) -> int:
    if engine.endswith(".file"):
        return sum(
            1 for f in file_path.iterdir() if f.name.startswith(settings.SESSION_COOKIE_NAME)
        )
    return Session.objects.count()


@pytest.mark.django_db
class SessionsClearExpiredTests:
    @pytest.mark.parametrize("engine", sorted(ENGINES))
    def test_clear_expired_engine_removes_expired_keeps_analytics(
        self, engine, tmp_path, monkeypatch
    ):
        dotted = ENGINES[engine]
        # The file engine caches its directory on the class; point it at this test's own.
        monkeypatch.setattr(FileSessionStore, "_storage_path", str(tmp_path), raising=False)
        now = timezone.now()
        old, recent = uuid.uuid4(), uuid.uuid4()
        Visit.objects.bulk_create(
            [
                visit(visited_at=now - timedelta(days=20), tracking_id=old),
                visit(
                    visited_at=now - timedelta(days=20, seconds=-30), tracking_id=old, path="/a/"
                ),
                visit(visited_at=now - timedelta(minutes=3), tracking_id=recent),
            ]
        )
        rollups.visits_aggregate()
        analytics = stored_rollups()

        with override_settings(SESSION_ENGINE=dotted, SESSION_FILE_PATH=str(tmp_path)):
            django_session(dotted, expired=True)
            django_session(dotted, expired=False)
            assert django_session_count(dotted, tmp_path) == 2

            assert retention.sessions_clear_expired() == 1

            assert django_session_count(dotted, tmp_path) == 1
        assert set(TrackedSession.objects.filter(ended=True).values_list("pk", flat=True)) == {old}
        assert TrackedSession.objects.get(pk=old).pageviews == 2
        assert stored_rollups() == analytics

    @pytest.mark.parametrize(
        "engine",
        [
            "django.contrib.sessions.backends.cache",
            "django.contrib.sessions.backends.signed_cookies",
        ],
    )
    def test_clear_expired_cache_engines_log_no_op(self, engine, caplog):
        with override_settings(SESSION_ENGINE=engine), caplog.at_level(logging.INFO):
            assert retention.sessions_clear_expired() == 0
        assert "nothing to clear" in caplog.text

    def test_clear_expired_new_visit_reopens_ended_session(self):
        tracking_id = uuid.uuid4()
        now = timezone.now()
        Visit.objects.bulk_create(
            [visit(visited_at=now - timedelta(days=30), tracking_id=tracking_id)]
        )
        rollups.visits_aggregate()
        retention.sessions_clear_expired()
        assert TrackedSession.objects.get(pk=tracking_id).ended

        Visit.objects.bulk_create([visit(visited_at=now, tracking_id=tracking_id)])
        rollups.visits_aggregate()

        assert not TrackedSession.objects.get(pk=tracking_id).ended


@pytest.mark.django_db
class RawVisitsPruneTests:
    def test_prune_deletes_only_old_and_aggregated(self, settings):
        settings.TRACKER_RAW_RETENTION_DAYS = 30
        now = timezone.now()
        old = [visit(visited_at=now - timedelta(days=31, minutes=i)) for i in range(25)]
        recent = [visit(visited_at=now - timedelta(days=29)) for _ in range(5)]
        Visit.objects.bulk_create(old + recent)
        rollups.visits_aggregate()
        late_old = [visit(visited_at=now - timedelta(days=40)) for _ in range(3)]
        Visit.objects.bulk_create(late_old)  # old, but not aggregated yet
        before = stored_rollups()

        assert retention.raw_visits_prune(batch_size=7) == 25

        remaining = set(Visit.objects.values_list("event_id", flat=True))
        assert remaining == {v.event_id for v in recent + late_old}
        assert stored_rollups() == before
        assert PageHourly.objects.exists()

    def test_prune_before_any_aggregation_deletes_nothing(self):
        Visit.objects.bulk_create([visit(visited_at=timezone.now() - timedelta(days=400))])
        assert not AggregationState.objects.exists()

        assert retention.raw_visits_prune() == 0
        assert Visit.objects.count() == 1

    def test_prune_then_aggregate_keeps_rollups_exact(self, settings):
        settings.TRACKER_RAW_RETENTION_DAYS = 1
        now = timezone.now()
        Visit.objects.bulk_create([visit(visited_at=now - timedelta(days=2)) for _ in range(4)])
        rollups.visits_aggregate()
        retention.raw_visits_prune()
        Visit.objects.bulk_create([visit(visited_at=now) for _ in range(3)])
        rollups.visits_aggregate()

        sessions = stored_rollups()["sessions"]
        assert len(sessions) == 7
        assert expected_rollups()["sessions"] <= sessions
