# ruff: noqa: S608 - the SQL is assembled from table names and constants; values are parameters.
"""Set-based aggregation of raw events into their rollups, incremental and exact.

Like the visits' (``tracker.rollups``), a run takes the events above a watermark (the
``AggregationState`` row named "events"; its ``last_visit_id`` holds the last event id) in
batches of consecutive ids, each batch one transaction. Per batch:

1. ``EV_BATCH`` gets each (name, visitor, hour) of the batch with its count, and whether it is
   fresh: no event of that name, visitor and hour was aggregated before (probed in the raw rows
   through the (name, tracking_id, occurred_at) index).
2. ``EventHourly`` and ``EventDaily`` add the counts, and the fresh triples to ``visitors``: a
   visitor counts once per hour, and a day's visitors are the sum of its hours.
3. ``EventVisitorHourly`` (and per day ``EventVisitorDaily``) gets the change to each (name,
   visitor)'s chain of hours from its earliest fresh hour on: the rows before the batch are
   subtracted and those after added, so a late event that falls between two hours re-links
   them. The distinct visitors of a name over any range are then exact (see
   ``EventVisitorCounts``).

A late event whose hour lies beyond the raw retention finds no earlier hour of its visitor and
counts as a first one: the same caveat as the pages' visitors.
"""

from __future__ import annotations

import logging

from tracker import goal_rollups, goals
from tracker.models import (
    Event,
    EventDaily,
    EventHourly,
    EventVisitorDaily,
    EventVisitorHourly,
)
from tracker.rollups import (
    RawSource,
    _Dialect,
    _execute,
    raw_aggregate,
    raw_rebuild,
    rollup_changes_apply,
    watermark,
)

logger = logging.getLogger(__name__)

STATE_NAME = "events"
DEFAULT_BATCH_SIZE = 200_000

EVENT = Event._meta.db_table
EVENT_HOURLY = EventHourly._meta.db_table
EVENT_DAILY = EventDaily._meta.db_table
EVENT_VISITOR_HOURLY = EventVisitorHourly._meta.db_table
EVENT_VISITOR_DAILY = EventVisitorDaily._meta.db_table
# Per-connection temporary tables, emptied at the start of each batch.
EV_BATCH = "tracker_event_rollup_batch"  # (name, visitor, hour): count, fresh
EV_DELTA = "tracker_event_rollup_delta"  # the change to EventHourly
EV_DAY_DELTA = "tracker_event_rollup_day_delta"  # the same per day: EventDaily's
EV_PAIRS = "tracker_event_rollup_pairs"  # (name, visitor) with a fresh hour, from the earliest
EV_LAG_CHANGES = "tracker_event_rollup_lag_changes"  # EventVisitorHourly's rows, old negated
EV_LAG_DELTA = "tracker_event_rollup_lag_delta"  # the change to EventVisitorHourly
EV_LAG_DAY_DELTA = "tracker_event_rollup_lag_day_delta"  # the same per day
TEMPORARY = (EV_BATCH, EV_DELTA, EV_DAY_DELTA, EV_PAIRS, EV_LAG_CHANGES, EV_LAG_DELTA,
             EV_LAG_DAY_DELTA)  # fmt: skip
DERIVED = (EventHourly, EventDaily, EventVisitorHourly, EventVisitorDaily)


def _temporary_tables(d: _Dialect) -> list[str]:
    uuid, moment, text, number = (
        ("uuid", "timestamp with time zone", "varchar(64)", "bigint")
        if d.postgres
        else ("", "", "", "")
    )
    return [
        f"""CREATE TEMPORARY TABLE IF NOT EXISTS {EV_BATCH} (name {text}, tracking_id {uuid},
            hour {moment}, occurrences {number}, fresh {number})""",
        *(
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({when} {moment}, name {text},
                occurrences {number}, visitors {number})"""
            for table, when in ((EV_DELTA, "hour"), (EV_DAY_DELTA, "day"))
        ),
        f"""CREATE TEMPORARY TABLE IF NOT EXISTS {EV_PAIRS} (name {text}, tracking_id {uuid},
            since {moment})""",
        *(
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({when} {moment}, name {text},
                previous_hour {moment}, visitors {number})"""
            for table, when in (
                (EV_LAG_CHANGES, "hour"),
                (EV_LAG_DELTA, "hour"),
                (EV_LAG_DAY_DELTA, "day"),
            )
        ),
    ]


def _batch_sql(d: _Dialect) -> str:
    """Each (name, visitor, hour) of the batch, its count, and 1 if no aggregated event of that
    name and visitor lies in that hour. Params: lo, lo, hi."""
    return f"""
        INSERT INTO {EV_BATCH} (name, tracking_id, hour, occurrences, fresh)
        SELECT b.name, b.tracking_id, b.hour, b.occurrences,
            CASE WHEN EXISTS (
                SELECT 1 FROM {EVENT} o
                WHERE o.name = b.name AND o.tracking_id = b.tracking_id
                    AND o.occurred_at >= b.hour AND o.occurred_at < {d.next_hour("b.hour")}
                    AND o.id <= %s
            ) THEN 0 ELSE 1 END
        FROM (
            SELECT name, tracking_id, {d.hour("occurred_at")} AS hour, count(*) AS occurrences
            FROM {EVENT} WHERE id > %s AND id <= %s
            GROUP BY 1, 2, 3
        ) b
    """


def _counts_delta_sql() -> str:
    """EventHourly's change: every batch adds occurrences, so no key nets to nothing."""
    return f"""
        INSERT INTO {EV_DELTA} (hour, name, occurrences, visitors)
        SELECT hour, name, sum(occurrences), sum(fresh) FROM {EV_BATCH} GROUP BY 1, 2
    """


def _pairs_sql() -> str:
    return f"""
        INSERT INTO {EV_PAIRS} (name, tracking_id, since)
        SELECT name, tracking_id, min(hour) FROM {EV_BATCH} WHERE fresh = 1 GROUP BY 1, 2
    """


def _lag_changes_sql(d: _Dialect, *, sign: int) -> str:
    """EventVisitorHourly's rows of the pairs' hours from their earliest fresh one, as the raw
    events up to the id given (the watermark: before the batch; its end: after) make them,
    counted ``sign`` times."""
    return f"""
        INSERT INTO {EV_LAG_CHANGES} (hour, name, previous_hour, visitors)
        SELECT c.hour, c.name, c.previous_hour, {sign} * count(*) FROM (
            SELECT h.name, h.hour, h.since,
                lag(h.hour) OVER (PARTITION BY h.name, h.tracking_id ORDER BY h.hour)
                    AS previous_hour
            FROM (
                SELECT DISTINCT p.name, p.tracking_id, p.since, {d.hour("e.occurred_at")} AS hour
                FROM {EV_PAIRS} p
                JOIN {EVENT} e ON e.name = p.name AND e.tracking_id = p.tracking_id
                WHERE e.id <= %s
            ) h
        ) c
        WHERE c.hour >= c.since AND c.previous_hour IS NOT NULL
        GROUP BY 1, 2, 3
    """


def _aggregate_range(cursor, d: _Dialect, *, lo: int, hi: int) -> int:
    """Add the events with ids in (lo, hi] to every event rollup; return their count."""
    if d.postgres:
        _execute(cursor, "SET LOCAL TimeZone = 'UTC'")  # date_trunc in UTC, as the visits'
        _execute(cursor, "SET LOCAL jit = off")
    for statement in _temporary_tables(d):
        _execute(cursor, statement)
    for table in TEMPORARY:
        _execute(cursor, d.empty(table))
    _execute(cursor, _batch_sql(d), [lo, lo, hi])
    _execute(cursor, _counts_delta_sql())
    _execute(cursor, _pairs_sql())
    _execute(cursor, _lag_changes_sql(d, sign=-1), [lo])
    _execute(cursor, _lag_changes_sql(d, sign=1), [hi])
    rollup_changes_apply(
        cursor,
        d,
        changes=None,
        delta=EV_DELTA,
        day_delta=EV_DAY_DELTA,
        hourly=EVENT_HOURLY,
        daily=EVENT_DAILY,
        keys=["name"],
        measures=["occurrences", "visitors"],
        count="occurrences",
    )
    rollup_changes_apply(
        cursor,
        d,
        changes=EV_LAG_CHANGES,
        delta=EV_LAG_DELTA,
        day_delta=EV_LAG_DAY_DELTA,
        hourly=EVENT_VISITOR_HOURLY,
        daily=EVENT_VISITOR_DAILY,
        keys=["name", "previous_hour"],
        measures=["visitors"],
        count="visitors",
    )
    goals.goal_hits_insert(kind="event", lo=lo, hi=hi)
    goal_rollups.goal_rollups_refresh(cursor, d)
    _execute(cursor, f"SELECT coalesce(sum(occurrences), 0) FROM {EV_BATCH}")
    return int(cursor.fetchone()[0])


EVENTS = RawSource(
    table=EVENT,
    state_name=STATE_NAME,
    noun="events",
    aggregate_range=_aggregate_range,
    derived=DERIVED,
)


def events_aggregate(*, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Aggregate every event above the watermark, one transaction per batch; return the count."""
    return raw_aggregate(EVENTS, batch_size=batch_size)


def event_rollups_rebuild(*, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Recompute the event rollups from the raw events that remain, in one transaction."""
    return raw_rebuild(EVENTS, batch_size=batch_size)


def event_watermark() -> int:
    """The highest event id already in the rollups (0 before the first run)."""
    return watermark(STATE_NAME)
