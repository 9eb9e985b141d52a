"""Upgrading a database aggregated by an earlier release ends with rollups equal to a rebuild."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.tracker.rollup_reference import expected_rollups, random_visits, stored_rollups
from tracker import rollups
from tracker.models import AggregationState, Visit, VisitSummary
from tracker.visit_pages import visit_pages_catch_up

BEFORE_VISITS = ("tracker", "0004_daily_covering_indexes")
WITH_VISITS = ("tracker", "0005_visits")
WITH_COUNTRIES = ("tracker", "0006_countries")
LATEST = ("tracker", "0012_visit_pages")


def migrate(target: tuple[str, str]):
    """Migrate the tracker app to ``target``; return the app registry of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return MigrationExecutor(connection).loader.project_state([target]).apps


@pytest.fixture(autouse=True)
def latest_schema_afterwards():
    """Leave the test database as the other tests expect it: every migration applied."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
class UpgradeTests:
    def test_upgrade_with_sessions_aggregated_rebuilds_as_visits(self):
        old = migrate(BEFORE_VISITS)
        OldVisit = old.get_model("tracker", "Visit")
        fields = [field.name for field in OldVisit._meta.fields if field.name != "id"]
        page_views = random_visits(seed=61, sessions=60)
        OldVisit.objects.bulk_create(
            [OldVisit(**{name: getattr(view, name) for name in fields}) for view in page_views]
        )
        # What the sessions-only aggregation left: a session per visitor, its rollups, and the
        # watermark at the last page view.
        last_id = OldVisit.objects.order_by("-id").values_list("id", flat=True).first()
        first = min(view.visited_at for view in page_views)
        old.get_model("tracker", "TrackedSession").objects.create(
            tracking_id=page_views[0].tracking_id,
            first_seen=first,
            last_seen=first + timedelta(days=3),
            pageviews=9,
            entry_path="/",
            exit_path="/",
        )
        old.get_model("tracker", "SessionHourly").objects.create(
            hour=first.replace(minute=0, second=0, microsecond=0),
            dimension="all",
            sessions=1,
            pageviews=9,
            bounces=0,
            duration_seconds=3 * 86400,
        )
        old.get_model("tracker", "PageHourly").objects.create(
            hour=first.replace(minute=0, second=0, microsecond=0),
            path="/",
            pageviews=9,
            sessions=1,
        )
        old.get_model("tracker", "AggregationState").objects.create(
            name=rollups.STATE_NAME, last_visit_id=last_id
        )

        migrate(WITH_VISITS)
        assert AggregationState.objects.get(name=rollups.STATE_NAME).last_visit_id == 0
        migrate(WITH_COUNTRIES)
        # Then the rest, as an upgrade does: aggregation also writes the tables added since.
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        aggregated = rollups.visits_aggregate()

        assert aggregated == len(page_views)
        assert stored_rollups() == expected_rollups()
        assert expected_rollups()["visits"]

    def test_upgrade_with_visits_aggregated_counts_them_as_unknown_country(self):
        page_views = random_visits(seed=67, sessions=80)
        for view in page_views:
            view.country = ""  # recorded before countries were
        Visit.objects.bulk_create(page_views)
        rollups.visits_aggregate()
        expected = expected_rollups()
        assert expected["country_visitor_hourly"]
        # The rollups as the release before countries left them: no country rows.
        old = migrate(WITH_VISITS)
        for name in ("VisitHourly", "VisitDaily"):
            old.get_model("tracker", name).objects.filter(dimension="country").delete()

        migrate(WITH_COUNTRIES)
        # Then the rest: the visits stored before page lists get theirs from the catch-up.
        migrate(LATEST)
        assert VisitSummary.objects.filter(pages=None).count() == len(expected["visits"])
        visit_pages_catch_up()

        assert stored_rollups() == expected
