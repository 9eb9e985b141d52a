# ruff: noqa: S608 - the SQL is assembled from table names and constants; values are parameters.
"""Funnel runs: each funnel's runs (``FunnelRun``), one per visit with a step-1 hit, derived
from the goal hits and their visit numbers so that a funnel's figures read the runs of the
range instead of walking every hit.

A run depends only on its visitor's hits of the funnel's goals, their visit numbers, and (a hit
numbered 1 may precede every visit and then starts no run) the start of the visitor's first
visit. So the goal rollups' refresh, which works the numbers out again, redoes the runs of:

- the visitors of its (goal, visitor) groups to redo, for the funnels using that goal;
- the visitors it looked at whose first visit now holds a step-1 hit earlier than that visit's
  run starts (or holds one and has no run, or holds none and has one): an event aggregated
  before the page view that starts its visit keeps visit number 1 but starts a run now.

A funnel created or edited gets all its runs rebuilt (``funnel_runs_rebuild``, queued after
the edit commits by ``funnel_runs_rebuild_later``; until then the funnel shows its old runs,
none for a new one); a goal rebuild rebuilds the funnels using the goal. A funnel whose runs
were built for another definition (``Funnel.runs_definition``: edited in bulk, or from before
the runs) is rebuilt by the next aggregation run (``funnel_runs_catch_up``).
"""

from __future__ import annotations

import logging

from django.db import connection, transaction

# Module references: goal_rollups imports this one while rollups may still be loading.
from tracker import goal_rollups, rollups
from tracker.models import (
    FUNNEL_MAX_STEPS,
    Funnel,
    FunnelDaily,
    FunnelHourly,
    FunnelRepeatDaily,
    FunnelRepeatHourly,
    FunnelRun,
    FunnelStep,
    GoalHit,
    VisitSummary,
)

logger = logging.getLogger(__name__)

GOAL_HIT = GoalHit._meta.db_table
VISITS = VisitSummary._meta.db_table
FUNNEL_STEP = FunnelStep._meta.db_table
FUNNEL_RUN = FunnelRun._meta.db_table
TIMES = [f"t{step}" for step in range(1, FUNNEL_MAX_STEPS + 1)]
ENTRY_ROLLUPS = (FunnelHourly, FunnelDaily, FunnelRepeatHourly, FunnelRepeatDaily)
# Per-connection temporary tables, emptied at the start of each refresh.
FR_VISITORS = "tracker_funnel_run_visitors"  # the (funnel, visitor) pairs whose runs to redo
FR_HOURS = "tracker_funnel_run_hours"  # their hours with a run entering, for one sign
FR_CHANGES = "tracker_funnel_run_changes"  # FunnelHourly's rows, old negated
FR_DELTA = "tracker_funnel_run_delta"
FR_DAY_DELTA = "tracker_funnel_run_day_delta"
FR_REPEAT_CHANGES = "tracker_funnel_run_repeat_changes"  # FunnelRepeatHourly's, old negated
FR_REPEAT_DELTA = "tracker_funnel_run_repeat_delta"
FR_REPEAT_DAY_DELTA = "tracker_funnel_run_repeat_day_delta"
TEMPORARY = (FR_VISITORS, FR_HOURS, FR_CHANGES, FR_DELTA, FR_DAY_DELTA, FR_REPEAT_CHANGES,
             FR_REPEAT_DELTA, FR_REPEAT_DAY_DELTA)  # fmt: skip


def funnel_definition(*, across_visits: bool, goal_ids: list[int]) -> str:
    """What a funnel's runs depend on besides the hits: compared with ``runs_definition``."""
    return f"{'across' if across_visits else 'visit'}:{','.join(map(str, goal_ids))}"


def _funnel_goals() -> dict[int, tuple[bool, list[int], str]]:
    """Every funnel with steps: (across_visits, goal ids by step, runs_definition), one query."""
    funnels: dict[int, tuple[bool, list[int], str]] = {}
    rows = FunnelStep.objects.order_by("funnel_id", "position").values_list(
        "funnel_id", "funnel__across_visits", "funnel__runs_definition", "goal_id"
    )
    for funnel_id, across_visits, runs_definition, goal_id in rows:
        funnels.setdefault(funnel_id, (across_visits, [], runs_definition))[1].append(goal_id)
    return funnels


def _temporary_tables(d: rollups._Dialect) -> list[str]:
    uuid, moment, number = (
        ("uuid", "timestamp with time zone", "bigint") if d.postgres else ("", "", "")
    )
    return [
        f"""CREATE TEMPORARY TABLE IF NOT EXISTS {FR_VISITORS} (funnel_id {number},
            tracking_id {uuid}, PRIMARY KEY (funnel_id, tracking_id))""",
        f"""CREATE TEMPORARY TABLE IF NOT EXISTS {FR_HOURS} (funnel_id {number},
            tracking_id {uuid}, hour {moment})""",
        *(
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({when} {moment},
                funnel_id {number}, visitors {number})"""
            for table, when in ((FR_CHANGES, "hour"), (FR_DELTA, "hour"), (FR_DAY_DELTA, "day"))
        ),
        *(
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({when} {moment},
                funnel_id {number}, previous_hour {moment}, visitors {number})"""
            for table, when in (
                (FR_REPEAT_CHANGES, "hour"),
                (FR_REPEAT_DELTA, "hour"),
                (FR_REPEAT_DAY_DELTA, "day"),
            )
        ),
    ]


def _temporary_tables_ready(cursor, d: rollups._Dialect) -> None:
    if d.postgres:
        rollups._execute(cursor, "SET LOCAL TimeZone = 'UTC'")  # hours and days in UTC
    for statement in _temporary_tables(d):
        rollups._execute(cursor, statement)
    for table in TEMPORARY:
        rollups._execute(cursor, d.empty(table))


def _first_visit_start(tracking_id: str) -> str:
    return (
        f"(SELECT v.started_at FROM {VISITS} v"
        f" WHERE v.tracking_id = {tracking_id} AND v.number = 1)"
    )


def _changed_visitors_sql(d: rollups._Dialect) -> str:
    """The (funnel, visitor) pairs whose runs may have changed in this refresh."""
    step1 = f"""(SELECT min(x.position) FROM {FUNNEL_STEP} x WHERE x.funnel_id = s.funnel_id)"""
    first_entry = f"""(SELECT min(h.reached_at) FROM {GOAL_HIT} h
        WHERE h.tracking_id = w.tracking_id AND h.goal_id = s.goal_id AND h.visit_number = 1
            AND h.reached_at >= {_first_visit_start("w.tracking_id")})"""
    first_run = f"""(SELECT r.t1 FROM {FUNNEL_RUN} r WHERE r.funnel_id = s.funnel_id
        AND r.tracking_id = w.tracking_id AND r.visit_number = 1)"""
    distinct = "IS DISTINCT FROM" if d.postgres else "IS NOT"
    return f"""
        INSERT INTO {FR_VISITORS} (funnel_id, tracking_id)
        SELECT s.funnel_id, g.tracking_id
        FROM {goal_rollups.GR_GROUPS} g JOIN {FUNNEL_STEP} s ON s.goal_id = g.goal_id
        UNION
        SELECT s.funnel_id, w.tracking_id
        FROM {goal_rollups.GR_VISITORS} w CROSS JOIN {FUNNEL_STEP} s
        WHERE s.position = {step1} AND {first_entry} {distinct} {first_run}
    """


def _runs_insert_sql(*, steps: int, across_visits: bool) -> str:
    """Insert the runs of FR_VISITORS' visitors of one funnel; params: the funnel id, its goal
    ids by step, the funnel id.

    Step k's time is its goal's earliest hit strictly after step k-1's, in the run's visit
    (same visit number) or, across visits, any later one.
    """
    keys = ["tracking_id", "visit_number"]
    columns = ", ".join(f"r.{key}" for key in keys)
    same_visit = "" if across_visits else "AND h.visit_number = r.visit_number"
    ctes = [
        # A hit numbered 1 before the first visit's start belongs to no visit.
        f"""step1 AS (SELECT h.tracking_id, h.visit_number, min(h.reached_at) AS t1
            FROM {FR_VISITORS} w JOIN {GOAL_HIT} h ON h.tracking_id = w.tracking_id
            WHERE w.funnel_id = %s AND h.goal_id = %s AND h.visit_number IS NOT NULL
                AND (h.visit_number > 1 OR h.reached_at >= {_first_visit_start("h.tracking_id")})
            GROUP BY h.tracking_id, h.visit_number)"""
    ]
    for step in range(2, steps + 1):
        ctes.append(
            f"""step{step} AS (SELECT {columns}, min(h.reached_at) AS t{step}
                FROM step{step - 1} r JOIN {GOAL_HIT} h ON h.tracking_id = r.tracking_id
                WHERE h.goal_id = %s AND h.reached_at > r.t{step - 1} {same_visit}
                GROUP BY {columns})"""
        )
    joins = " ".join(
        f"LEFT JOIN step{step} s{step} ON "
        + " AND ".join(f"s{step}.{key} = s1.{key}" for key in keys)
        for step in range(2, steps + 1)
    )
    times = ", ".join(f"s{step}.t{step}" for step in range(1, steps + 1))
    depth = " + ".join(
        ["1"]
        + [f"CASE WHEN s{step}.t{step} IS NULL THEN 0 ELSE 1 END" for step in range(2, steps + 1)]
    )
    return f"""WITH {", ".join(ctes)}
        INSERT INTO {FUNNEL_RUN} (funnel_id, tracking_id, visit_number, depth,
            {", ".join(TIMES[:steps])})
        SELECT %s, s1.tracking_id, s1.visit_number, {depth}, {times} FROM step1 s1 {joins}"""


def _entries_count(cursor, d: rollups._Dialect, *, sign: int) -> None:
    """Add FR_VISITORS' runs, as they stand, to the entry rollups' changes ``sign`` times: each
    visitor once per hour with a run entering, and each such hour with its previous one."""
    rollups._execute(cursor, d.empty(FR_HOURS))
    rollups._execute(
        cursor,
        f"""INSERT INTO {FR_HOURS} (funnel_id, tracking_id, hour)
            SELECT DISTINCT r.funnel_id, r.tracking_id, {d.hour("r.t1")}
            FROM {FR_VISITORS} w JOIN {FUNNEL_RUN} r
                ON r.funnel_id = w.funnel_id AND r.tracking_id = w.tracking_id""",
    )
    rollups._execute(
        cursor,
        f"""INSERT INTO {FR_CHANGES} (hour, funnel_id, visitors)
            SELECT hour, funnel_id, {sign} * count(*) FROM {FR_HOURS} GROUP BY 1, 2""",
    )
    rollups._execute(
        cursor,
        f"""INSERT INTO {FR_REPEAT_CHANGES} (hour, funnel_id, previous_hour, visitors)
            SELECT hour, funnel_id, previous_hour, {sign} * count(*) FROM (
                SELECT funnel_id, hour, lag(hour) OVER (
                    PARTITION BY funnel_id, tracking_id ORDER BY hour) AS previous_hour
                FROM {FR_HOURS}
            ) repeats WHERE previous_hour IS NOT NULL GROUP BY 1, 2, 3""",
    )


def _entries_apply(cursor, d: rollups._Dialect) -> None:
    """Net the changes per hour and day and apply them to the four entry rollups."""
    for changes, delta, day_delta, hourly, daily, keys in (
        (FR_CHANGES, FR_DELTA, FR_DAY_DELTA, FunnelHourly, FunnelDaily, ["funnel_id"]),
        (FR_REPEAT_CHANGES, FR_REPEAT_DELTA, FR_REPEAT_DAY_DELTA, FunnelRepeatHourly,
         FunnelRepeatDaily, ["funnel_id", "previous_hour"]),
    ):  # fmt: skip
        rollups.rollup_changes_apply(
            cursor,
            d,
            changes=changes,
            delta=delta,
            day_delta=day_delta,
            hourly=hourly._meta.db_table,
            daily=daily._meta.db_table,
            keys=keys,
            measures=["visitors"],
            count="visitors",
        )


def _runs_replace(cursor, d: rollups._Dialect, *, funnels: dict) -> None:
    """Replace the runs of FR_VISITORS' (funnel, visitor) pairs, and their entry rollups."""
    _entries_count(cursor, d, sign=-1)
    for funnel_id, (across_visits, goal_ids, _) in funnels.items():
        rollups._execute(
            cursor,
            f"""DELETE FROM {FUNNEL_RUN} WHERE funnel_id = %s AND tracking_id IN
                (SELECT tracking_id FROM {FR_VISITORS} WHERE funnel_id = %s)""",
            [funnel_id, funnel_id],
        )
        rollups._execute(
            cursor,
            _runs_insert_sql(steps=len(goal_ids), across_visits=across_visits),
            [funnel_id, *goal_ids, funnel_id],
        )
    _entries_count(cursor, d, sign=1)
    _entries_apply(cursor, d)


def funnel_runs_refresh(cursor, d: rollups._Dialect) -> None:
    """Redo the runs that the goal rollups' refresh may have changed (see the module's
    docstring); runs after it, in its transaction, with its temporary tables filled."""
    _temporary_tables_ready(cursor, d)
    rollups._execute(cursor, _changed_visitors_sql(d))
    rollups._execute(cursor, f"SELECT DISTINCT funnel_id FROM {FR_VISITORS}")
    changed = {funnel_id for (funnel_id,) in cursor.fetchall()}
    if changed:
        funnels = _funnel_goals()
        _runs_replace(cursor, d, funnels={key: funnels[key] for key in changed if key in funnels})


def funnel_runs_rebuild(
    *, funnel_ids: list[int] | None = None, goal_id: int | None = None, hits_counted: bool = False
) -> int:
    """Rebuild every run of the given funnels (those using ``goal_id``; every funnel without
    either) and their entry rollups from the goal hits, in the caller's transaction or one of
    its own; return how many funnels. Holds the aggregation watermarks so that no batch changes
    hits meanwhile.

    The runs read the hits' visit numbers, so the hits not counted yet are counted first,
    unless ``hits_counted``: the caller did so under the same lock (a goal rebuild).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        goal_rollups.watermarks_lock()
        if not hits_counted:
            goal_rollups.uncounted_hits_add()
        funnels = {
            funnel_id: funnel
            for funnel_id, funnel in _funnel_goals().items()
            if (funnel_ids is None or funnel_id in funnel_ids)
            and (goal_id is None or goal_id in funnel[1])
        }
        # Also empties a funnel left without steps.
        emptied = funnels.keys() if funnel_ids is None else {*funnel_ids, *funnels}
        for model in (FunnelRun, *ENTRY_ROLLUPS):
            model.objects.filter(funnel_id__in=emptied).delete()
        d = rollups._Dialect(connection.vendor)
        _temporary_tables_ready(cursor, d)
        for funnel_id, (_, goal_ids, _) in funnels.items():
            rollups._execute(
                cursor,
                f"""INSERT INTO {FR_VISITORS} (funnel_id, tracking_id)
                    SELECT DISTINCT %s, tracking_id FROM {GOAL_HIT} WHERE goal_id = %s""",
                [funnel_id, goal_ids[0]],
            )
        _runs_replace(cursor, d, funnels=funnels)
        for funnel_id, (across_visits, goal_ids, _) in funnels.items():
            Funnel.objects.filter(pk=funnel_id).update(
                runs_definition=funnel_definition(across_visits=across_visits, goal_ids=goal_ids)
            )
    return len(funnels)


def funnel_runs_rebuild_later(*, funnel_id: int) -> None:
    """Queue the rebuild of a funnel's runs once the current transaction commits: at 10M page
    views a funnel's runs take ~30 s to build, too long for the request that edits it."""
    from tracker.tasks import rebuild_funnel_runs  # tasks import this module

    transaction.on_commit(lambda: rebuild_funnel_runs.delay(funnel_id))


def funnel_runs_catch_up() -> int:
    """Rebuild the runs of the funnels edited without a rebuild (a bulk update, the upgrade
    that added the runs); return how many. Takes no lock when there are none."""
    stale = [
        funnel_id
        for funnel_id, (across_visits, goal_ids, runs_definition) in _funnel_goals().items()
        if runs_definition != funnel_definition(across_visits=across_visits, goal_ids=goal_ids)
    ]
    if not stale:
        return 0
    rebuilt = funnel_runs_rebuild(funnel_ids=stale)
    logger.info("rebuilt the runs of %d funnels", rebuilt)
    return rebuilt
