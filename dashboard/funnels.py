# ruff: noqa: S608 - only table and column names are interpolated; values are parameters.
"""Funnel figures: how many visitors reach each step of a funnel, in order, and how long they
take between steps. Read from the funnel's runs (``FunnelRun``, which aggregation keeps from the
goal hits: ``tracker.funnel_runs``), never from raw rows, so a funnel stays reportable after raw
rows are pruned and costs the runs of the range, not every hit.

Definitions (the README's metric definitions say the same):
- A run counts in the range its step-1 hit falls in: a visitor enters with a step-1 hit in
  [start, end) and passes step k with a hit of step k's goal *strictly after* it passed step
  k-1, even after the range's end. Strictly: one page view or event never passes two steps,
  and a funnel may ask for the same goal twice.
- A hit belongs to the visit of its visitor that started last at or before it. Without
  ``across_visits`` every step must fall in the step-1 hit's visit; with it, in that visit or any
  later one of the same visitor. A hit before its visitor's first visit belongs to no visit and
  starts no run.
- Passing times are the earliest possible (the earliest step-1 hit of a visit, then the earliest
  hit of each next step after the previous): a step reached twice counts once, steps out of
  order are skipped, and the run goes as deep as any could.
- A visitor counts once per step: its run is that of its visit that went deepest, the earliest
  of equals (across visits that is its first run of the range); the time between steps is that
  run's, in whole seconds, and the median is over visitors (the mean of the two middle ones
  when even).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.db.models import Prefetch, QuerySet

from dashboard.funnel_charts import funnel_figure
from dashboard.queries import _rollup_rows
from tracker.models import (
    Funnel,
    FunnelDaily,
    FunnelHourly,
    FunnelRepeatDaily,
    FunnelRepeatHourly,
    FunnelRun,
    FunnelStep,
    VisitSummary,
)
from tracker.rollups import _Dialect

FUNNEL_CACHE_SECONDS = 15 * 60  # as the dashboard's other panels
RUNS = FunnelRun._meta.db_table


def funnels_with_steps() -> QuerySet[Funnel]:
    """Every funnel with its steps (by position) and their goals, in two queries."""
    steps = FunnelStep.objects.select_related("goal").order_by("position")
    return Funnel.objects.prefetch_related(Prefetch("steps", queryset=steps)).order_by("name")


def _entered_sql(*, funnel_id: int, start: dt.datetime, end: dt.datetime) -> tuple[str, list]:
    """SQL for step 1's visitors, from the entry rollups: the hourly visitors less those that
    entered in an earlier hour of the range too (FunnelRepeatCounts), a few rows a day."""
    hourly, hourly_params = _rollup_rows(
        FunnelHourly.objects.filter(funnel_id=funnel_id),
        FunnelDaily.objects.filter(funnel_id=funnel_id),
        start=start,
        end=end,
        fields=["visitors"],
    )
    repeats, repeat_params = _rollup_rows(
        FunnelRepeatHourly.objects.filter(funnel_id=funnel_id, previous_hour__gte=start),
        FunnelRepeatDaily.objects.filter(funnel_id=funnel_id, previous_hour__gte=start),
        start=start,
        end=end,
        fields=["visitors"],
    )
    sql = (
        f"SELECT (SELECT coalesce(sum(visitors), 0) FROM ({hourly}) entries)"
        f" - (SELECT coalesce(sum(visitors), 0) FROM ({repeats}) repeats)"
    )
    return sql, [*hourly_params, *repeat_params]


def _report_sql(
    *,
    funnel_id: int,
    steps: int,
    start: dt.datetime,
    end: dt.datetime,
    filtered: tuple[str, list] | None,
) -> tuple[str, list]:
    """Per step its visitors and median seconds from the previous step, from the funnel's runs
    entering in the range (``filtered``: only those whose visit the query selects).

    The steps after the first come from each visitor's deepest run (the earliest of equals),
    among the runs that passed step 2 only: a few of the range's runs, by an index of their own.
    """
    dialect = _Dialect(connection.vendor)
    adapt = connection.ops.adapt_datetimefield_value
    condition = "r.funnel_id = %s AND r.t1 >= %s AND r.t1 < %s"
    params = [funnel_id, adapt(start), adapt(end)]
    times = ", ".join(f"r.t{step}" for step in range(1, steps + 1))
    if filtered is None:
        ctes, deep = [], f"{RUNS} r WHERE {condition} AND r.depth >= 2"
        entered, entered_params = _entered_sql(funnel_id=funnel_id, start=start, end=end)
    else:
        # The filter's visits are read once, for step 1's distinct count and the later steps.
        condition += f" AND (r.tracking_id, r.visit_number) IN ({filtered[0]})"
        params += filtered[1]
        ctes = [
            f"""chosen AS MATERIALIZED (SELECT r.tracking_id, r.depth, {times}
                FROM {RUNS} r WHERE {condition})"""
        ]
        deep = "chosen r WHERE r.depth >= 2"
        entered, entered_params = "SELECT count(DISTINCT tracking_id) FROM chosen", []
    ctes.append(
        f"""best AS (SELECT * FROM (SELECT {times}, row_number() OVER (
            PARTITION BY r.tracking_id ORDER BY r.depth DESC, r.t1) AS choice
            FROM {deep}) ranked WHERE choice = 1)"""
    )
    seconds = {
        step: dialect.whole_seconds(f"t{step}", f"t{step - 1}") for step in range(2, steps + 1)
    }
    if dialect.postgres:
        # One sort per step: percentile_cont(0.5) is the mean of the two middle ones.
        later = "".join(
            f""" UNION ALL SELECT {step}, count(*),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY {seconds[step]})
                FROM best WHERE t{step} IS NOT NULL"""
            for step in range(2, steps + 1)
        )
        sql = (
            f"WITH {', '.join(ctes)}"
            f" SELECT 1 AS step, ({entered}) AS visitors, NULL AS median{later}"
        )
        return sql, [*params, *entered_params]
    counts = " UNION ALL ".join(
        [f"SELECT 1 AS step, ({entered}) AS visitors"]
        + [f"SELECT {step}, count(t{step}) FROM best" for step in range(2, steps + 1)]
    )
    # SQLite has no percentile: the middle rows of a window.
    durations = " UNION ALL ".join(
        [
            f"SELECT {step} AS step, {seconds[step]} AS seconds FROM best WHERE t{step} IS NOT NULL"
            for step in range(2, steps + 1)
        ]
        # A one-step funnel (only while being edited) has no time between steps.
        or ["SELECT 0 AS step, 0 AS seconds FROM best WHERE 1 = 0"]
    )
    sql = f"""WITH {", ".join(ctes)},
        counts AS ({counts}),
        durations AS ({durations}),
        ranked AS (SELECT step, seconds,
            row_number() OVER (PARTITION BY step ORDER BY seconds) AS position,
            count(*) OVER (PARTITION BY step) AS total FROM durations),
        medians AS (SELECT step, avg(seconds) AS median FROM ranked
            WHERE position IN ((total + 1) / 2, (total + 2) / 2) GROUP BY step)
        SELECT c.step, c.visitors, m.median FROM counts c LEFT JOIN medians m ON m.step = c.step"""
    return sql, [*params, *entered_params]


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
    filtered = None
    if visits is not None:
        sql, params = visits.values("tracking_id", "number").query.sql_with_params()
        filtered = (sql, list(params))
    sql, params = _report_sql(
        funnel_id=funnel.pk, steps=len(steps), start=start, end=end, filtered=filtered
    )
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
