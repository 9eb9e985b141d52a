# ruff: noqa: S608 - the SQL is assembled from table names and constants; values are parameters.
"""Goal rollups: each goal's hits, visitors, converted visits and revenue per hour and day,
kept exact as hits arrive and as late page views split or join visits.

A hit's visit (``GoalHit.visit_number``: its visitor's last visit started at or before it, the
first for an earlier hit) can change whenever the visitor's visits are split again, so the
rollups are kept per (goal, visitor) group, set-based:

1. The visitors to look at: those of the batch of page views being aggregated (their visits may
   have changed) and those with hits not counted yet (``visit_number`` NULL: new hits, rebuilt
   goals, hits from before these rollups existed).
2. Their hits' visit numbers are worked out again; the groups with a hit whose number is new or
   changed are the ones to redo.
3. Those groups' hits as counted so far are subtracted, the new numbers stored, and the groups'
   hits added again: per hour (``GoalHourly``), and per (hour, earlier hour) for the visitors and
   visits that had a hit of the goal in an earlier hour (``GoalRepeatHourly``), then per day.
4. The funnels' runs of those visitors are redone (``tracker.funnel_runs``).

Runs inside aggregation's batches (``tracker.rollups``, ``tracker.event_rollups``) and goal
rebuilds (``tracker.goals``), under their locks; ``goal_rollups_catch_up`` counts what is left
(after an upgrade) in a transaction of its own.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.utils import timezone

# Module references: rollups imports goals, which imports this, which funnel_runs imports.
from tracker import funnel_runs, rollups
from tracker.models import (
    AggregationState,
    GoalDaily,
    GoalHit,
    GoalHourly,
    GoalRepeatDaily,
    GoalRepeatHourly,
    VisitSummary,
)

_Dialect, _execute = rollups._Dialect, rollups._execute

logger = logging.getLogger(__name__)

GOAL_HIT = GoalHit._meta.db_table
VISITS = VisitSummary._meta.db_table
GOAL_HOURLY = GoalHourly._meta.db_table
GOAL_DAILY = GoalDaily._meta.db_table
GOAL_REPEAT_HOURLY = GoalRepeatHourly._meta.db_table
GOAL_REPEAT_DAILY = GoalRepeatDaily._meta.db_table
ROLLUPS = (GoalHourly, GoalDaily, GoalRepeatHourly, GoalRepeatDaily)
COUNTS = ["hits", "visitors", "visits", "revenue_hits", "revenue"]
REPEATS = ["visitors", "visits"]
# The aggregation watermarks (tracker.rollups.STATE_NAME, tracker.event_rollups.STATE_NAME),
# locked by a goal rebuild so that no batch of either changes hits while it runs.
STATE_NAMES = ("visits", "events")
REVENUE_UNIT = 10_000  # GoalHit.revenue has 4 decimal places
# Per-connection temporary tables, emptied at the start of each refresh.
GR_VISITORS = "tracker_goal_rollup_visitors"  # visitors whose hits may need a new visit number
GR_CHANGED = "tracker_goal_rollup_changed"  # hits with a new or changed visit number
GR_GROUPS = "tracker_goal_rollup_groups"  # (goal, visitor) groups to subtract and add again
GR_HOURS = "tracker_goal_rollup_hours"  # the groups' hits per (visit, hour), for one sign
GR_CHANGES = "tracker_goal_rollup_changes"  # GoalHourly's rows, old negated
GR_DELTA = "tracker_goal_rollup_delta"  # the change to GoalHourly
GR_DAY_DELTA = "tracker_goal_rollup_day_delta"  # the same per day
GR_REPEAT_CHANGES = "tracker_goal_rollup_repeat_changes"  # GoalRepeatHourly's, old negated
GR_REPEAT_DELTA = "tracker_goal_rollup_repeat_delta"
GR_REPEAT_DAY_DELTA = "tracker_goal_rollup_repeat_day_delta"
TEMPORARY = (GR_VISITORS, GR_CHANGED, GR_GROUPS, GR_HOURS, GR_CHANGES, GR_DELTA, GR_DAY_DELTA,
             GR_REPEAT_CHANGES, GR_REPEAT_DELTA, GR_REPEAT_DAY_DELTA)  # fmt: skip


def _temporary_tables(d: _Dialect) -> list[str]:
    uuid, moment, number = (
        ("uuid", "timestamp with time zone", "bigint") if d.postgres else ("", "", "")
    )
    counts = ", ".join(f"{column} {number}" for column in COUNTS)
    repeats = ", ".join(f"{column} {number}" for column in REPEATS)
    return [
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {GR_VISITORS} (tracking_id {uuid} PRIMARY KEY)",
        f"""CREATE TEMPORARY TABLE IF NOT EXISTS {GR_CHANGED} (id {number}, goal_id {number},
            tracking_id {uuid}, visit_number {number})""",
        f"""CREATE TEMPORARY TABLE IF NOT EXISTS {GR_GROUPS} (goal_id {number}, tracking_id {uuid},
            PRIMARY KEY (goal_id, tracking_id))""",
        f"""CREATE TEMPORARY TABLE IF NOT EXISTS {GR_HOURS} (goal_id {number},
            tracking_id {uuid}, visit_number {number}, hour {moment}, hits {number},
            revenue_hits {number}, revenue {number})""",
        *(
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({when} {moment},
                goal_id {number}, {counts})"""
            for table, when in ((GR_CHANGES, "hour"), (GR_DELTA, "hour"), (GR_DAY_DELTA, "day"))
        ),
        *(
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({when} {moment},
                goal_id {number}, previous_hour {moment}, {repeats})"""
            for table, when in (
                (GR_REPEAT_CHANGES, "hour"),
                (GR_REPEAT_DELTA, "hour"),
                (GR_REPEAT_DAY_DELTA, "day"),
            )
        ),
    ]


def _changed_sql() -> str:
    """The looked-at visitors' hits whose visit number is new or different, with the new one.

    A visitor's visits are numbered in start order, so its (tracking_id, number) index read
    backwards stops at the visit.
    """
    return f"""
        INSERT INTO {GR_CHANGED} (id, goal_id, tracking_id, visit_number)
        SELECT id, goal_id, tracking_id, visit_number FROM (
            SELECT h.id, h.goal_id, h.tracking_id, h.visit_number AS stored,
                coalesce((
                    SELECT v.number FROM {VISITS} v
                    WHERE v.tracking_id = h.tracking_id AND v.started_at <= h.reached_at
                    ORDER BY v.number DESC LIMIT 1
                ), 1) AS visit_number
            FROM {GR_VISITORS} w JOIN {GOAL_HIT} h ON h.tracking_id = w.tracking_id
        ) numbered
        WHERE stored IS NULL OR stored <> visit_number
    """


def _hours_sql(d: _Dialect) -> str:
    """The groups' counted hits (a number set) per (goal, visitor, visit, hour)."""
    revenue = f"CAST(round(h.revenue * {REVENUE_UNIT}) AS bigint)"
    return f"""
        INSERT INTO {GR_HOURS} (goal_id, tracking_id, visit_number, hour, hits, revenue_hits,
            revenue)
        SELECT h.goal_id, h.tracking_id, h.visit_number, {d.hour("h.reached_at")}, count(*),
            count(h.revenue), coalesce(sum({revenue}), 0)
        FROM {GR_GROUPS} g
        JOIN {GOAL_HIT} h ON h.goal_id = g.goal_id AND h.tracking_id = g.tracking_id
        WHERE h.visit_number IS NOT NULL
        GROUP BY 1, 2, 3, 4
    """


def _changes_sql(*, sign: int) -> list[str]:
    """GR_HOURS as GoalHourly's and GoalRepeatHourly's rows, counted ``sign`` times."""
    return [
        f"""INSERT INTO {GR_CHANGES} (hour, goal_id, {", ".join(COUNTS)})
            SELECT hour, goal_id, {sign} * sum(hits), {sign} * count(DISTINCT tracking_id),
                {sign} * count(*), {sign} * sum(revenue_hits), {sign} * sum(revenue)
            FROM {GR_HOURS} GROUP BY hour, goal_id""",
        # Each visitor's hours with its previous one, and each visit's: a row per repeat.
        f"""INSERT INTO {GR_REPEAT_CHANGES} (hour, goal_id, previous_hour, visitors, visits)
            SELECT hour, goal_id, previous_hour, {sign} * sum(visitor), {sign} * sum(visit)
            FROM (
                SELECT goal_id, hour, lag(hour) OVER (
                    PARTITION BY goal_id, tracking_id ORDER BY hour
                ) AS previous_hour, 1 AS visitor, 0 AS visit
                FROM (SELECT DISTINCT goal_id, tracking_id, hour FROM {GR_HOURS}) visitor_hours
                UNION ALL
                SELECT goal_id, hour, lag(hour) OVER (
                    PARTITION BY goal_id, tracking_id, visit_number ORDER BY hour
                ), 0, 1
                FROM {GR_HOURS}
            ) repeats
            WHERE previous_hour IS NOT NULL
            GROUP BY 1, 2, 3""",
    ]


def _groups_recount(cursor, d: _Dialect) -> None:
    """Subtract GR_GROUPS' hits as counted, store GR_CHANGED's numbers, add them again."""
    _execute(cursor, _hours_sql(d))
    for statement in _changes_sql(sign=-1):
        _execute(cursor, statement)
    _execute(
        cursor,
        f"""UPDATE {GOAL_HIT} SET visit_number = c.visit_number FROM {GR_CHANGED} c
            WHERE {GOAL_HIT}.id = c.id""",
    )
    _execute(cursor, d.empty(GR_HOURS))
    _execute(cursor, _hours_sql(d))
    for statement in _changes_sql(sign=1):
        _execute(cursor, statement)
    rollups.rollup_changes_apply(
        cursor,
        d,
        changes=GR_CHANGES,
        delta=GR_DELTA,
        day_delta=GR_DAY_DELTA,
        hourly=GOAL_HOURLY,
        daily=GOAL_DAILY,
        keys=["goal_id"],
        measures=COUNTS,
        count="hits",
    )
    rollups.rollup_changes_apply(
        cursor,
        d,
        changes=GR_REPEAT_CHANGES,
        delta=GR_REPEAT_DELTA,
        day_delta=GR_REPEAT_DAY_DELTA,
        hourly=GOAL_REPEAT_HOURLY,
        daily=GOAL_REPEAT_DAILY,
        keys=["goal_id", "previous_hour"],
        measures=REPEATS,
        count="visitors",
    )


def goal_rollups_refresh(cursor, d: _Dialect, *, visitors_sql: str | None = None) -> int:
    """Bring the goal rollups in line with the hits and visits: for the visitors that
    ``visitors_sql`` selects (a query of tracking ids) and those with hits not counted yet.
    Runs in the caller's transaction; returns how many hits got a new visit number.
    """
    if d.postgres:
        _execute(cursor, "SET LOCAL TimeZone = 'UTC'")  # hours and days in UTC, as the visits'
    for statement in _temporary_tables(d):
        _execute(cursor, statement)
    for table in TEMPORARY:
        _execute(cursor, d.empty(table))
    looked_at = [f"SELECT tracking_id FROM {GOAL_HIT} WHERE visit_number IS NULL"]
    if visitors_sql:
        looked_at.append(visitors_sql)
    _execute(
        cursor,
        f"INSERT INTO {GR_VISITORS} (tracking_id) "
        f"SELECT DISTINCT tracking_id FROM ({' UNION ALL '.join(looked_at)}) looked_at",
    )
    _execute(cursor, _changed_sql())
    _execute(
        cursor,
        f"INSERT INTO {GR_GROUPS} (goal_id, tracking_id) "
        f"SELECT DISTINCT goal_id, tracking_id FROM {GR_CHANGED}",
    )
    _execute(cursor, f"SELECT count(*) FROM {GR_CHANGED}")
    changed = int(cursor.fetchone()[0])
    if changed:
        _groups_recount(cursor, d)
    funnel_runs.funnel_runs_refresh(cursor, d)  # also when only a first visit's start moved
    return changed


def goal_rollups_forget(*, goal_id: int | None = None) -> None:
    """Uncount a goal's hits (every goal's without ``goal_id``): delete its rollup rows and
    clear its hits' visit numbers, so that the next refresh counts them afresh."""
    for model in ROLLUPS:
        rows = model.objects.all() if goal_id is None else model.objects.filter(goal_id=goal_id)
        rows.delete()
    hits = GoalHit.objects.all() if goal_id is None else GoalHit.objects.filter(goal_id=goal_id)
    hits.exclude(visit_number=None).update(visit_number=None)


def watermarks_lock() -> None:
    """Hold both aggregation watermarks until the end of the transaction (no-op on SQLite,
    whose write transactions run alone anyway), and restamp them: the dashboard caches what it
    derives under their stamp, and the hits are about to change."""
    AggregationState.objects.bulk_create(
        [AggregationState(name=name) for name in STATE_NAMES], ignore_conflicts=True
    )
    list(AggregationState.objects.select_for_update().filter(name__in=STATE_NAMES).order_by("name"))
    AggregationState.objects.filter(name__in=STATE_NAMES).update(updated_at=timezone.now())


def uncounted_hits_add() -> int:
    """Count the hits not counted yet, in the caller's transaction; return how many."""
    with connection.cursor() as cursor:
        return goal_rollups_refresh(cursor, _Dialect(connection.vendor))


def goal_rollups_catch_up() -> int:
    """Count the hits no refresh has counted yet (after the upgrade that added the rollups);
    return how many. A no-op, taking no lock, when there are none."""
    if not GoalHit.objects.filter(visit_number=None).exists():
        return 0
    with transaction.atomic():
        watermarks_lock()
        counted = uncounted_hits_add()
    logger.info("counted %d goal hits into the goal rollups", counted)
    return counted
