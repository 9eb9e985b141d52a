# ruff: noqa: S608 - only table and column names are interpolated; values are parameters.
"""Funnel figures: how many visitors reach each step of a funnel, in order, and how long they
take between steps. Read from the goal hits and the per-visit table, never from raw rows, so a
funnel stays reportable after raw rows are pruned.

Definitions (the README's metric definitions say the same):
- Only hits in [start, end) count, for every step: a visitor enters with a step-1 hit in the
  range and passes step k with a hit of step k's goal *strictly after* it passed step k-1 and
  before the range's end. Strictly: one page view or event never passes two steps, and a funnel
  may ask for the same goal twice.
- A hit belongs to the visit of its visitor that started last at or before it. Without
  ``across_visits`` every step must fall in the step-1 hit's visit; with it, in that visit or any
  later one of the same visitor. A hit before its visitor's first visit belongs to no visit and
  starts no run.
- Passing times are the earliest possible (the earliest step-1 hit, then the earliest hit of
  each next step after the previous): a step reached twice counts once, steps out of order are
  skipped, and the run goes as deep as any could.
- A visitor counts once per step. With several visits (same-visit funnels) its run is that of
  its visit that went deepest, the earliest of equals; the time between steps is that run's, in
  whole seconds, and the median is over visitors (the mean of the two middle ones when even).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.db.models import Prefetch, QuerySet

from dashboard.funnel_charts import funnel_figure
from tracker.models import Funnel, FunnelStep, GoalHit, VisitSummary
from tracker.rollups import _Dialect

FUNNEL_CACHE_SECONDS = 15 * 60  # as the dashboard's other panels


def funnels_with_steps() -> QuerySet[Funnel]:
    """Every funnel with its steps (by position) and their goals, in two queries."""
    steps = FunnelStep.objects.select_related("goal").order_by("position")
    return Funnel.objects.prefetch_related(Prefetch("steps", queryset=steps)).order_by("name")


def _visit_number_of(hit: str) -> str:
    """SQL: the number of the visit a hit belongs to (its visitor's last visit started at or
    before it), or NULL.

    Numbers follow start times (the later of two started at once has the higher number), so
    this reads the visitor's (tracking_id, number) index backwards and stops at the first.
    """
    table = VisitSummary._meta.db_table
    return (
        f"(SELECT v.number FROM {table} v WHERE v.tracking_id = {hit}.tracking_id"
        f" AND v.started_at <= {hit}.reached_at ORDER BY v.number DESC LIMIT 1)"
    )


def _runs_sql(*, steps: int, across_visits: bool, filtered: str | None) -> tuple[str, list[str]]:
    """The CTEs that give each run's passing times t1..tn (NULL past its depth), and the
    order of the parameters they take (goal ids by step, "start", "end", "filter")."""
    hits = GoalHit._meta.db_table
    visits = VisitSummary._meta.db_table
    params: list[str] = ["goal1", "start", "end"]
    need_visit = not across_visits or filtered is not None
    visit_column = f", {_visit_number_of('h')} AS visit_number" if need_visit else ""
    # Materialized: each hit's visit is looked up once (the planner would inline it twice).
    ctes = [
        f"""entries AS MATERIALIZED (SELECT h.tracking_id, h.reached_at{visit_column}
            FROM {hits} h WHERE h.goal_id = %s AND h.reached_at >= %s AND h.reached_at < %s)"""
    ]
    conditions = []
    if need_visit:
        conditions.append("e.visit_number IS NOT NULL")
    if filtered is not None:
        conditions.append(f"(e.tracking_id, e.visit_number) IN ({filtered})")
        params.append("filter")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    if across_visits:
        # One run per visitor; no later visit bounds it.
        keys = ["tracking_id"]
        ctes.append(
            f"""step1 AS (SELECT e.tracking_id, min(e.reached_at) AS t1
                FROM entries e {where} GROUP BY e.tracking_id)"""
        )
    else:
        # One run per visit, bounded by the start of the visitor's next visit: it started
        # after every hit of this one (else they would be its hits).
        keys = ["tracking_id", "visit_number"]
        ctes.append(
            f"""step1 AS (SELECT f.tracking_id, f.visit_number, f.t1,
                (SELECT n.started_at FROM {visits} n WHERE n.tracking_id = f.tracking_id
                    AND n.number = f.visit_number + 1) AS visit_end
                FROM (SELECT e.tracking_id, e.visit_number, min(e.reached_at) AS t1
                    FROM entries e {where} GROUP BY e.tracking_id, e.visit_number) f)"""
        )
    # Same visit: each step before the start of the visitor's next visit.
    carried = keys if across_visits else [*keys, "visit_end"]
    bound = "" if across_visits else "AND (r.visit_end IS NULL OR h.reached_at < r.visit_end)"
    columns = ", ".join(f"r.{column}" for column in carried)
    for step in range(2, steps + 1):
        ctes.append(
            f"""step{step} AS (SELECT {columns}, min(h.reached_at) AS t{step}
                FROM step{step - 1} r JOIN {hits} h ON h.tracking_id = r.tracking_id
                WHERE h.goal_id = %s AND h.reached_at > r.t{step - 1} AND h.reached_at < %s
                    {bound}
                GROUP BY {columns})"""
        )
        params += [f"goal{step}", "end"]
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
    ctes.append(f"runs AS (SELECT s1.tracking_id, {times}, {depth} AS depth FROM step1 s1 {joins})")
    # A visitor's deepest run, the earliest of equals (one run per visitor across visits).
    ctes.append(
        """best AS (SELECT * FROM (SELECT r.*, row_number() OVER (
            PARTITION BY r.tracking_id ORDER BY r.depth DESC, r.t1) AS choice FROM runs r) ranked
            WHERE choice = 1)"""
    )
    return ",\n".join(ctes), params


def _report_sql(*, steps: int, across_visits: bool, filtered: str | None) -> tuple[str, list[str]]:
    dialect = _Dialect(connection.vendor)
    ctes, params = _runs_sql(steps=steps, across_visits=across_visits, filtered=filtered)
    counts = " UNION ALL ".join(
        f"SELECT {step} AS step, count(t{step}) AS visitors FROM best"
        for step in range(1, steps + 1)
    )
    durations = " UNION ALL ".join(
        [
            f"SELECT {step} AS step, {dialect.whole_seconds(f't{step}', f't{step - 1}')}"
            f" AS seconds FROM best WHERE t{step} IS NOT NULL"
            for step in range(2, steps + 1)
        ]
        # A one-step funnel (only while being edited) has no time between steps.
        or ["SELECT 0 AS step, 0 AS seconds FROM best WHERE 1 = 0"]
    )
    sql = f"""WITH {ctes},
        counts AS ({counts}),
        durations AS ({durations}),
        ranked AS (SELECT step, seconds,
            row_number() OVER (PARTITION BY step ORDER BY seconds) AS position,
            count(*) OVER (PARTITION BY step) AS total FROM durations),
        medians AS (SELECT step, avg(seconds) AS median FROM ranked
            WHERE position IN ((total + 1) / 2, (total + 2) / 2) GROUP BY step)
        SELECT c.step, c.visitors, m.median FROM counts c LEFT JOIN medians m ON m.step = c.step
        ORDER BY c.step"""
    return sql, params


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def funnel_report(
    *,
    funnel: Funnel,
    start: dt.datetime,
    end: dt.datetime,
    visits: QuerySet[VisitSummary] | None = None,
) -> dict:
    """A funnel's figures over [start, end): per step its visitors, conversion from the
    previous step and from the first (None when that step had no visitor), drop-off from the
    previous step and the median seconds from it (None for step 1 or when nobody passed).

    ``visits`` (filters): only runs whose step-1 hit falls in one of those visits count.
    One query; ``funnel.steps`` may come prefetched (``funnels_with_steps``).
    """
    steps = sorted(funnel.steps.all(), key=lambda step: step.position)
    if not steps:
        return {"name": funnel.name, "across_visits": funnel.across_visits, "steps": []}
    filtered, filter_params = None, []
    if visits is not None:
        filtered, filter_params = visits.values("tracking_id", "number").query.sql_with_params()
    sql, names = _report_sql(
        steps=len(steps), across_visits=funnel.across_visits, filtered=filtered
    )
    adapt = connection.ops.adapt_datetimefield_value
    values = {"start": [adapt(start)], "end": [adapt(end)], "filter": list(filter_params)}
    # Steps are numbered 1..n by their order, whatever their stored positions.
    for number, step in enumerate(steps, 1):
        values[f"goal{number}"] = [step.goal_id]
    params = [value for name in names for value in values[name]]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = {step: (int(visitors), median) for step, visitors, median in cursor.fetchall()}
    first = rows.get(1, (0, None))[0]
    previous = first
    figures = []
    for number, step in enumerate(steps, 1):
        visitors, median = rows.get(number, (0, None))
        figures.append(
            {
                "name": step.goal.name,
                "visitors": visitors,
                "conversion_from_previous": _ratio(visitors, previous),
                "conversion_from_first": _ratio(visitors, first),
                "drop_off": previous - visitors,
                "median_seconds": None if median is None or number == 1 else float(median),
            }
        )
        previous = visitors
    return {
        "name": funnel.name,
        "across_visits": funnel.across_visits,
        "steps": figures,
    }


def funnel_reports(
    *, start: dt.datetime, end: dt.datetime, visits: QuerySet[VisitSummary] | None = None
) -> list[dict]:
    """Every funnel's report (``funnel_report``), by name: two queries and one per funnel."""
    return [
        funnel_report(funnel=funnel, start=start, end=end, visits=visits)
        for funnel in funnels_with_steps()
    ]


def _definitions_stamp(funnels: list[Funnel]) -> str:
    """What the funnels' figures depend on besides the hits: their steps and goals."""
    return repr(
        [
            (
                funnel.pk,
                funnel.name,
                funnel.across_visits,
                [
                    (step.position, step.goal_id, step.goal.name, step.goal.kind,
                     step.goal.match, step.goal.prop_key, step.goal.prop_value)
                    for step in funnel.steps.all()
                ],
            )
            for funnel in funnels
        ]
    )  # fmt: skip


def funnel_panel(
    *,
    start: dt.datetime,
    end: dt.datetime,
    version: Callable[[], str],
    visits: QuerySet[VisitSummary] | None = None,
    filters_key: str = "",
) -> list[dict]:
    """Every funnel's report and chart, cached under the rollups' stamp (``version()``, read
    only when there is a funnel: goal hits change only with aggregation), the funnels'
    definitions (which staff change at any time) and the filters (``filters_key``, that
    ``visits`` are the range's visits passing)."""
    funnels = list(funnels_with_steps())
    if not funnels:
        return []
    raw = (
        f"{version()}|{start.isoformat()}|{end.isoformat()}|{_definitions_stamp(funnels)}"
        f"|{filters_key}"
    )
    key = f"dashboard:funnels:v1:{hashlib.sha256(raw.encode()).hexdigest()}"
    panel = cache.get(key)
    if panel is None:
        panel = []
        for funnel in funnels:
            report = funnel_report(funnel=funnel, start=start, end=end, visits=visits)
            panel.append(
                {
                    "id": funnel.pk,
                    "figure_id": f"funnel-figure-{funnel.pk}",
                    "report": report,
                    "figure": funnel_figure(report),
                }
            )
        cache.set(key, panel, timeout=FUNNEL_CACHE_SECONDS)
    return panel
