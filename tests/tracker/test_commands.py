"""The management commands are thin doors over the same functions as the tasks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.tracker.rollup_reference import expected_rollups, random_visits, stored_rollups
from tracker.models import TrackedSession, Visit, VisitHourly


@pytest.mark.django_db
class AggregateVisitsCommandTests:
    def test_aggregate_visits_command_aggregates_new(self, capsys):
        Visit.objects.bulk_create(random_visits(seed=31, sessions=30))

        call_command("aggregate_visits", batch_size=40)

        assert f"Aggregated {Visit.objects.count()} new visits." in capsys.readouterr().out
        assert stored_rollups() == expected_rollups()

    def test_aggregate_visits_command_rebuild_repairs(self, capsys):
        Visit.objects.bulk_create(random_visits(seed=32, sessions=30))
        call_command("aggregate_visits")
        TrackedSession.objects.update(pageviews=0)
        VisitHourly.objects.all().delete()

        call_command("aggregate_visits", rebuild=True)

        assert "Rebuilt the rollups from" in capsys.readouterr().out
        assert stored_rollups() == expected_rollups()


@pytest.mark.django_db
class PruneRawVisitsCommandTests:
    def test_prune_raw_visits_command_prunes_old_aggregated(self, capsys):
        old = timezone.now() - timedelta(days=90)
        Visit.objects.bulk_create(
            Visit(
                event_id=uuid.uuid4(),
                tracking_id=uuid.uuid4(),
                visited_at=old,
                path="/",
                status_code=200,
                response_ms=1,
            )
            for _ in range(3)
        )
        call_command("aggregate_visits")

        call_command("prune_raw_visits", batch_size=2)

        assert "Pruned 3 raw visits." in capsys.readouterr().out
        assert not Visit.objects.exists()
        assert TrackedSession.objects.count() == 3
