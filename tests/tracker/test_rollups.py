"""Rollups equal an independent plain-Python recomputation, however the visits arrive."""

from __future__ import annotations

import dataclasses
import random
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction

from tests.tracker.rollup_reference import (
    START,
    expected_rollups,
    random_visits,
    stored_rollups,
)
from tracker import rollups
from tracker.models import (
    AggregationState,
    PageDaily,
    TrackedSession,
    Visit,
    VisitDaily,
    VisitHourly,
    VisitSummary,
)


def insert(visits: list[Visit]) -> None:
    Visit.objects.bulk_create(visits)


def watermark() -> int:
    return AggregationState.objects.get(name=rollups.STATE_NAME).last_visit_id


@pytest.mark.django_db
class VisitsAggregateTests:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_aggregate_matches_reference_random(self, seed):
        insert(random_visits(seed=seed, sessions=80))

        aggregated = rollups.visits_aggregate()

        assert aggregated == Visit.objects.count()
        assert type(aggregated) is int
        assert stored_rollups() == expected_rollups()
        assert watermark() == Visit.objects.latest("id").id

    def test_aggregate_again_changes_nothing(self):
        insert(random_visits(seed=4, sessions=60))
        rollups.visits_aggregate()
        before = stored_rollups()

        assert rollups.visits_aggregate() == 0
        assert stored_rollups() == before

    def test_aggregate_empty_table_does_nothing(self):
        assert rollups.visits_aggregate() == 0
        assert watermark() == 0
        assert not TrackedSession.objects.exists()

    @pytest.mark.parametrize(("seed", "small_batch"), [(5, 50_000), (6, 50_000), (7, 0)])
    def test_aggregate_split_runs_with_late_arrivals_equals_one_run(
        self, seed, small_batch, monkeypatch
    ):
        # small_batch=0 takes the bulk path on PostgreSQL (hash joins, ANALYZE after a batch).
        monkeypatch.setattr(rollups, "SMALL_BATCH", small_batch)
        # Shuffled visits, inserted in chunks: later chunks carry visits older than earlier ones,
        # moving sessions' first_seen, entry and exit across runs and batches.
        visits = random_visits(seed=seed, sessions=80)
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(visits)), 5))
        for begin, end in zip([0, *cuts], [*cuts, len(visits)], strict=True):
            insert(visits[begin:end])
            rollups.visits_aggregate(batch_size=rng.choice([7, 50, 1000]))

        split = stored_rollups()
        assert split == expected_rollups()
        rollups.rollups_rebuild()
        assert stored_rollups() == split

    @pytest.mark.parametrize("seed", [21, 22])
    def test_aggregate_across_midnight_keeps_daily_rollups_exact(self, seed):
        # Sessions from 22:00 to past 03:00: days change inside sessions, and late chunks move
        # sessions' start (and so their VisitDaily row) back across midnight.
        visits = random_visits(seed=seed, sessions=80, start=START.replace(hour=22))
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(visits)), 4))
        for begin, end in zip([0, *cuts], [*cuts, len(visits)], strict=True):
            insert(visits[begin:end])
            rollups.visits_aggregate(batch_size=rng.choice([5, 40]))
            assert stored_rollups() == expected_rollups()

        days = set(PageDaily.objects.values_list("day", flat=True))
        assert len(days) >= 2  # returns come days later too
        assert sum(PageDaily.objects.values_list("pageviews", flat=True)) == len(visits)

    def test_aggregate_late_page_view_adds_earlier_visit(self):
        visits = random_visits(seed=7, sessions=1)
        for visit in visits:
            visit.visited_at = START + timedelta(hours=3, minutes=10)
            visit.referrer_host = visit.utm_source = visit.utm_medium = visit.utm_campaign = ""
        insert(visits)
        rollups.visits_aggregate()
        late = random_visits(seed=8, sessions=1)[0]
        late.tracking_id = visits[0].tracking_id
        late.visited_at = START + timedelta(minutes=5)
        insert([late])

        rollups.visits_aggregate()

        assert stored_rollups() == expected_rollups()
        # Three hours before the others: a visit of its own, and the visitor's first.
        starts = VisitHourly.objects.filter(dimension="all").order_by("hour")
        assert list(starts.values_list("hour", "visits", "returning_visits")) == [
            (START, 1, 0),
            (START + timedelta(hours=3), 1, 1),
        ]
        daily = VisitDaily.objects.filter(dimension="all").values_list("day", "visits")
        assert list(daily) == [(START.replace(hour=0), 2)]

    def test_return_after_raw_rows_pruned_keeps_earlier_visit(self):
        views = random_visits(seed=71, sessions=1)
        for view in views:
            view.visited_at = START
            view.referrer_host = view.utm_source = view.utm_medium = view.utm_campaign = ""
        insert(views)
        rollups.visits_aggregate()
        earlier = list(VisitSummary.objects.values_list())
        Visit.objects.all().delete()  # pruned after the retention period, as prune_raw_visits does
        back = random_visits(seed=72, sessions=1)[0]
        back.tracking_id = views[0].tracking_id
        back.visited_at = START + timedelta(days=40)
        insert([back])

        rollups.visits_aggregate()

        stored = VisitSummary.objects.order_by("number")
        assert list(stored.values_list())[:1] == earlier
        assert list(stored.values_list("number", "started_at", "pageviews")) == [
            (1, START, len(views)),
            (2, back.visited_at, 1),
        ]
        assert TrackedSession.objects.get().visits == 2
        returning = VisitHourly.objects.filter(dimension="all").order_by("hour")
        assert list(returning.values_list("visits", "returning_visits")) == [(1, 0), (1, 1)]

    @pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL planner hazard")
    def test_bulk_batch_into_rollups_analyzed_empty_never_rescans_them(self, monkeypatch):
        # A fresh install whose empty rollup tables were analyzed, then a big first batch: a
        # statement that reads the table it fills is planned for an empty table and rescans it
        # for every row it adds (88 s for 84k keys, measured; 1.7 s with ON CONFLICT).
        monkeypatch.setattr(rollups, "SMALL_BATCH", 0)
        filled = {"tracker_visithourly", "tracker_visitdaily"}
        with connection.cursor() as cursor:
            for table in filled:
                cursor.execute(f"ANALYZE {table}")
        insert(random_visits(seed=23, sessions=80))
        plans = {}

        def explain_inserts(execute, sql, params, many, context):
            table = sql.split()[2] if sql.startswith("INSERT INTO") else None
            if table in filled:
                with connection.cursor() as cursor:
                    cursor.execute(f"EXPLAIN {sql}", params)
                    plans[table] = "\n".join(row[0] for row in cursor.fetchall())
            return execute(sql, params, many, context)

        with connection.execute_wrapper(explain_inserts):
            rollups.visits_aggregate()

        assert stored_rollups() == expected_rollups()
        assert plans.keys() == filled
        for table, plan in plans.items():
            assert f"Scan on {table}" not in plan, plan

    def test_aggregate_id_gaps_are_skipped_not_walked(self):
        # Batches span ids, not rows: a gap far wider than a batch costs one probe, not a loop.
        visits = random_visits(seed=15, sessions=40)
        for offset, visit in enumerate(visits[-10:]):
            visit.id = 10**12 + offset * 10**6
        insert(visits)
        Visit.objects.filter(id__in=list(Visit.objects.values_list("id", flat=True)[5:15])).delete()

        assert rollups.visits_aggregate(batch_size=7) == Visit.objects.count()
        assert stored_rollups() == expected_rollups()
        assert watermark() == Visit.objects.latest("id").id

    def test_aggregate_hours_are_utc_whatever_the_connection_zone(self):
        insert(random_visits(seed=16, sessions=40))
        zone = "SET TimeZone = %s" if connection.vendor == "postgresql" else "SELECT %s"
        with connection.cursor() as cursor:
            cursor.execute(zone, ["America/St_Johns"])  # a half-hour offset
        rollups.visits_aggregate()
        with connection.cursor() as cursor:
            cursor.execute(zone, ["UTC"])  # as Django set it, to read the results back

        assert stored_rollups() == expected_rollups()

    def test_rebuild_matches_reference(self):
        insert(random_visits(seed=9, sessions=50))
        rollups.visits_aggregate(batch_size=30)
        TrackedSession.objects.update(pageviews=999)
        VisitHourly.objects.all().delete()

        assert rollups.rollups_rebuild(batch_size=100) == Visit.objects.count()
        assert stored_rollups() == expected_rollups()


@pytest.mark.django_db
class FailedAggregationTests:
    def test_failure_half_way_leaves_rollups_as_before(self, monkeypatch):
        insert(random_visits(seed=10, sessions=40))
        rollups.visits_aggregate()
        before = stored_rollups()
        mark = watermark()
        insert(random_visits(seed=11, sessions=40, start=START - timedelta(hours=2)))

        def broken(cursor, d):
            raise RuntimeError("worker killed")

        # Fails after PageHourly, TrackedSession and the visits were written, before VisitHourly.
        monkeypatch.setattr(rollups, "_apply_visit_rollups", broken)
        with pytest.raises(RuntimeError):
            rollups.visits_aggregate()
        assert stored_rollups() == before
        assert watermark() == mark

        monkeypatch.undo()
        rollups.visits_aggregate()
        assert stored_rollups() == expected_rollups()

    def test_failure_in_later_batch_keeps_earlier_batches(self, monkeypatch):
        insert(random_visits(seed=12, sessions=40))
        original = rollups._aggregate_range
        calls = []

        def fails_second_time(cursor, d, *, lo, hi):
            calls.append(hi)
            if len(calls) == 2:
                raise RuntimeError("worker killed")
            return original(cursor, d, lo=lo, hi=hi)

        failing = dataclasses.replace(rollups.PAGE_VIEWS, aggregate_range=fails_second_time)
        monkeypatch.setattr(rollups, "PAGE_VIEWS", failing)
        with pytest.raises(RuntimeError):
            rollups.visits_aggregate(batch_size=25)
        assert watermark() == calls[0]

        monkeypatch.undo()
        rollups.visits_aggregate(batch_size=25)
        assert stored_rollups() == expected_rollups()


@pytest.mark.django_db(transaction=True)
class ConcurrentAggregationTests:
    def test_two_runs_at_once_equal_one(self):
        insert(random_visits(seed=13, sessions=150))
        barrier = threading.Barrier(2)
        counts, errors = [], []

        def run():
            try:
                barrier.wait()
                counts.append(rollups.visits_aggregate(batch_size=40))
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert sum(counts) == Visit.objects.count()
        assert stored_rollups() == expected_rollups()

    def test_insert_in_flight_with_lower_id_is_not_skipped(self):
        visits = random_visits(seed=14, sessions=30)
        committed_before, in_flight, committed_after = visits[:40], visits[40:45], visits[45:]
        insert(committed_before)
        holding, release = threading.Event(), threading.Event()

        def slow_writer():
            with transaction.atomic():
                insert(in_flight)
                holding.set()
                release.wait(10)
            connection.close()

        def aggregate():
            counts.append(rollups.visits_aggregate())
            connection.close()

        counts = []
        writer = threading.Thread(target=slow_writer)
        writer.start()
        holding.wait(10)
        if connection.vendor == "postgresql":
            # Higher ids commit first: the run must wait for the lower in-flight ones.
            insert(committed_after)
        aggregator = threading.Thread(target=aggregate)
        aggregator.start()
        aggregator.join(0.5)
        waited = aggregator.is_alive()
        release.set()
        writer.join()
        aggregator.join()
        if connection.vendor != "postgresql":
            insert(committed_after)  # SQLite serialises writers: the lower ids are all in
        counts.append(rollups.visits_aggregate())

        assert sum(counts) == len(visits)
        assert waited
        if connection.vendor == "postgresql":
            assert counts[0] == len(visits)
        assert stored_rollups() == expected_rollups()
