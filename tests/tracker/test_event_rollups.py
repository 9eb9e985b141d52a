"""Event rollups against a plain-Python reference over the raw events.

For any hour-aligned range, each event name's count and distinct visitors read from the rollups
(``dashboard.event_queries.event_totals``) must equal what the raw rows say, however the events
arrived: shuffled, late (an event older than others already aggregated), in several batches,
across midnight, one visitor reaching an event twice in one hour or in several hours.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.event_queries import event_totals
from tracker import event_rollups, retention
from tracker.models import (
    Event,
    EventDaily,
    EventHourly,
    EventVisitorDaily,
    EventVisitorHourly,
)

pytestmark = pytest.mark.django_db

ORIGIN = datetime(2026, 3, 27, 18, 0, tzinfo=UTC)  # three days before and after midnights
NAMES = ["signup", "download: pdf", "outbound", "cookie_tested"]


def an_event(*, tracking_id: uuid.UUID, name: str, at: datetime) -> Event:
    return Event(
        event_id=uuid.uuid4(), tracking_id=tracking_id, occurred_at=at, name=name, path="/"
    )


def random_events(rng: random.Random, *, visitors: int, events: int) -> list[Event]:
    ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(visitors)]
    made = []
    for _ in range(events):
        visitor = rng.choice(ids)
        name = rng.choice(NAMES)
        # Clustered in time so visitors reach a name in the same hour, in neighbouring hours
        # and days apart; microseconds just around the hour's edges.
        at = ORIGIN + timedelta(hours=rng.randrange(0, 96), minutes=rng.choice([0, 30, 59]))
        at += timedelta(seconds=rng.choice([0, 59]), microseconds=rng.choice([0, 999_999]))
        made.append(an_event(tracking_id=visitor, name=name, at=at))
    return made


def reference(events: list[Event], *, start: datetime, end: datetime) -> list[dict]:
    counts: dict[str, int] = defaultdict(int)
    visitors: dict[str, set] = defaultdict(set)
    for event in events:
        if start <= event.occurred_at < end:
            counts[event.name] += 1
            visitors[event.name].add(event.tracking_id)
    rows = [
        {"name": name, "visitors": len(visitors[name]), "count": counts[name]} for name in counts
    ]
    return sorted(rows, key=lambda row: (-row["visitors"], -row["count"], row["name"]))


def ranges(rng: random.Random, *, count: int) -> list[tuple[datetime, datetime]]:
    whole = (ORIGIN - timedelta(hours=18), ORIGIN + timedelta(days=5))
    days = (ORIGIN + timedelta(hours=6), ORIGIN + timedelta(hours=6 + 48))  # two UTC days
    chosen = [whole, days, (ORIGIN, ORIGIN + timedelta(hours=1))]
    for _ in range(count):
        first, last = sorted(rng.sample(range(-2, 100), 2))
        chosen.append((ORIGIN + timedelta(hours=first), ORIGIN + timedelta(hours=last)))
    return chosen


def rollup_rows() -> dict:
    return {
        model.__name__: sorted(
            tuple(row) for row in model.objects.values_list(*fields)
        )
        for model, fields in [
            (EventHourly, ["hour", "name", "occurrences", "visitors"]),
            (EventDaily, ["day", "name", "occurrences", "visitors"]),
            (EventVisitorHourly, ["hour", "name", "previous_hour", "visitors"]),
            (EventVisitorDaily, ["day", "name", "previous_hour", "visitors"]),
        ]
    }


class EventRollupTests:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_event_totals_equal_reference_with_late_and_shuffled_arrivals(self, seed):
        rng = random.Random(seed)
        events = random_events(rng, visitors=25, events=400)
        arrivals = events[:]
        rng.shuffle(arrivals)
        # Several batches, aggregated in between: later batches hold events older than ones
        # already aggregated (late arrivals), and small batch sizes split each run.
        for first in range(0, len(arrivals), 90):
            Event.objects.bulk_create(arrivals[first : first + 90])
            event_rollups.events_aggregate(batch_size=rng.choice([7, 50, 1000]))
        for start, end in ranges(rng, count=25):
            assert event_totals(start=start, end=end) == reference(events, start=start, end=end)
        incremental = rollup_rows()
        assert event_rollups.event_rollups_rebuild() == len(events)
        assert rollup_rows() == incremental

    def test_event_reached_twice_in_one_hour_and_in_two_hours(self):
        visitor, other = uuid.uuid4(), uuid.uuid4()
        events = [
            an_event(tracking_id=visitor, name="signup", at=ORIGIN + timedelta(minutes=1)),
            an_event(tracking_id=visitor, name="signup", at=ORIGIN + timedelta(minutes=50)),
            an_event(tracking_id=visitor, name="signup", at=ORIGIN + timedelta(hours=7)),
            an_event(tracking_id=other, name="signup", at=ORIGIN + timedelta(hours=7)),
        ]
        Event.objects.bulk_create(events)
        assert event_rollups.events_aggregate() == 4
        day = (ORIGIN - timedelta(hours=18), ORIGIN + timedelta(hours=30))
        assert event_totals(start=day[0], end=day[1]) == [
            {"name": "signup", "visitors": 2, "count": 4}
        ]
        assert event_totals(start=ORIGIN, end=ORIGIN + timedelta(hours=1)) == [
            {"name": "signup", "visitors": 1, "count": 2}
        ]

    def test_late_event_between_two_hours_relinks_the_chain(self):
        visitor = uuid.uuid4()
        early, late = ORIGIN, ORIGIN + timedelta(hours=10)
        Event.objects.bulk_create(
            [an_event(tracking_id=visitor, name="signup", at=at) for at in (early, late)]
        )
        event_rollups.events_aggregate()
        middle = an_event(tracking_id=visitor, name="signup", at=ORIGIN + timedelta(hours=5))
        Event.objects.bulk_create([middle])
        assert event_rollups.events_aggregate() == 1
        assert set(EventVisitorHourly.objects.values_list("hour", "previous_hour")) == {
            (ORIGIN + timedelta(hours=5), early),
            (late, ORIGIN + timedelta(hours=5)),
        }
        for start in (early, ORIGIN + timedelta(hours=5), ORIGIN + timedelta(hours=6)):
            end = late + timedelta(hours=1)
            expected = reference(
                list(Event.objects.all()), start=start, end=end
            )
            assert event_totals(start=start, end=end) == expected

    def test_aggregation_runs_twice_counts_once(self):
        Event.objects.bulk_create(random_events(random.Random(9), visitors=5, events=30))
        assert event_rollups.events_aggregate() == 30
        assert event_rollups.events_aggregate() == 0
        assert sum(EventHourly.objects.values_list("occurrences", flat=True)) == 30

    def test_empty_range_and_no_events(self):
        assert event_rollups.events_aggregate() == 0
        assert event_totals(start=ORIGIN, end=ORIGIN + timedelta(days=1)) == []

    def test_prune_keeps_rollups_and_unaggregated_events(self, settings):
        settings.TRACKER_RAW_RETENTION_DAYS = 30
        old = datetime.now(UTC) - timedelta(days=40)
        visitor = uuid.uuid4()
        Event.objects.bulk_create(
            [an_event(tracking_id=visitor, name="signup", at=old + timedelta(hours=h))
             for h in range(3)]
        )  # fmt: skip
        event_rollups.events_aggregate()
        late_old = an_event(tracking_id=visitor, name="signup", at=old)
        recent = an_event(tracking_id=visitor, name="signup", at=datetime.now(UTC))
        Event.objects.bulk_create([late_old, recent])  # not aggregated yet
        before = rollup_rows()
        assert retention.raw_events_prune(batch_size=2) == 3
        assert set(Event.objects.values_list("event_id", flat=True)) == {
            late_old.event_id,
            recent.event_id,
        }
        assert rollup_rows() == before
