# ruff: noqa: S608 - only table and column names are interpolated; values are parameters.
"""Goal figures of a range: from the goal rollups (``tracker.goal_rollups``), or under
filters from the materialized hits (GoalHit) and the per-visit table; never from raw rows.

For each goal, over its hits with ``reached_at`` in [start, end):

- visitors: distinct visitors with a hit;
- conversions: visits with at least one hit (once per visit). A hit belongs to the visit of its
  visitor that started last at or before it (the first visit for a hit before any);
- conversion_rate: visitors / the range's visitors (the dashboard's visitors card);
- revenue: the sum of the hits' revenue (None when no hit has one), a Decimal;
  average_revenue: revenue / conversions, to 4 decimal places.

Unfiltered, the cost follows the hours and days of the range, not its hits; filtered, it
follows the hits of the range (see docs/benchmarks.md).
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal

from django.db.models import CharField, Count, Exists, OuterRef, QuerySet, Sum, Value
from django.db.models.functions import Cast, Concat

from dashboard.queries import _fetch, _rollup_rows, earlier_hour_sums, visit_count, visitor_count
from tracker.goal_rollups import REVENUE_UNIT
from tracker.models import (
    Goal,
    GoalDaily,
    GoalHit,
    GoalHourly,
    GoalRepeatDaily,
    GoalRepeatHourly,
    VisitSummary,
)

GOAL_COLUMNS = ["name", "visitors", "conversions", "conversion_rate", "revenue"]
REVENUE_PLACES = Decimal("0.0001")  # what GoalHit.revenue holds


def _revenue(value) -> Decimal | None:
    """A sum from the database as an exact Decimal (SQLite sums the stored decimals as REAL)."""
    if value is None:
        return None
    return Decimal(str(value)).quantize(REVENUE_PLACES)


def _unfiltered_counts(*, start: dt.datetime, end: dt.datetime) -> dict[int, tuple]:
    """Per goal id: (visitors, conversions, revenue) of its hits in [start, end), from the goal
    rollups: the hourly visitors (visits) less those with a hit in an earlier hour of the range,
    as the events' visitors (see GoalRepeatCounts)."""
    rows, params = _rollup_rows(
        GoalHourly.objects.all(),
        GoalDaily.objects.all(),
        start=start,
        end=end,
        fields=["goal_id", "visitors", "visits", "revenue_hits", "revenue"],
    )
    sql = f"""SELECT goal_id, sum(visitors), sum(visits), sum(revenue_hits), sum(revenue)
        FROM ({rows}) rollup GROUP BY goal_id"""
    sums = _fetch(sql, params)
    repeats = {
        measure: earlier_hour_sums(
            GoalRepeatHourly, GoalRepeatDaily, key="goal_id", measure=measure, start=start, end=end
        )
        if sums
        else {}
        for measure in ("visitors", "visits")
    }
    return {
        goal_id: (
            int(visitors) - repeats["visitors"].get(goal_id, 0),
            int(visits) - repeats["visits"].get(goal_id, 0),
            _revenue(Decimal(int(revenue)) / REVENUE_UNIT) if revenue_hits else None,
        )
        for goal_id, visitors, visits, revenue_hits, revenue in sums
    }


def _filtered_counts(
    *, start: dt.datetime, end: dt.datetime, visits: QuerySet[VisitSummary]
) -> dict[int, tuple]:
    """Per goal id: (visitors, conversions, revenue) of its hits in [start, end) whose visit is
    one of ``visits``.

    A semi-join of the hits to the filtered visits on (visitor, visit number), and a visit told
    apart by that pair: looking each hit's visit up by a subquery cost 10 s at 10M page views.
    """
    own_visit = visits.filter(tracking_id=OuterRef("tracking_id"), number=OuterRef("visit_number"))
    visit_key = Concat(
        Cast("tracking_id", CharField()), Value(" "), Cast("visit_number", CharField())
    )
    rows = (
        GoalHit.objects.filter(Exists(own_visit), reached_at__gte=start, reached_at__lt=end)
        .values("goal_id")
        .annotate(
            visitors=Count("tracking_id", distinct=True),
            conversions=Count(visit_key, distinct=True),
            revenue=Sum("revenue"),
        )
        .values_list("goal_id", "visitors", "conversions", "revenue")
    )
    return {
        goal_id: (visitors, conversions, _revenue(revenue))
        for goal_id, visitors, conversions, revenue in rows
    }


def goal_totals(
    *,
    start: dt.datetime,
    end: dt.datetime,
    visits: QuerySet[VisitSummary] | None = None,
    range_visitors: int | None = None,
) -> list[dict]:
    """Every goal's figures in [start, end), most converted visitors first (see the top).

    With ``visits`` (the range's visits that pass the filters), only hits of those visits count
    and the rate is over their visitors: ``range_visitors`` when the caller has counted them
    already (stats.json's headline), which spares a distinct count of the filtered visits.
    """
    goals = list(Goal.objects.values_list("id", "name"))
    if not goals:
        return []
    if visits is None:
        counts = _unfiltered_counts(start=start, end=end)
        range_visitors = visitor_count(
            start=start, end=end, visits=visit_count(start=start, end=end), path=None
        )
    else:
        counts = _filtered_counts(start=start, end=end, visits=visits)
        if range_visitors is None:
            range_visitors = visits.values("tracking_id").distinct().count()
    totals = []
    for goal_id, name in goals:
        visitors, conversions, revenue = counts.get(goal_id, (0, 0, None))
        average = (
            (revenue / conversions).quantize(REVENUE_PLACES, rounding=ROUND_HALF_EVEN)
            if revenue is not None and conversions
            else None
        )
        totals.append(
            {
                "name": name,
                "visitors": visitors,
                "conversions": conversions,
                "conversion_rate": round(visitors / range_visitors, 4) if range_visitors else None,
                "revenue": revenue,
                "average_revenue": average,
            }
        )
    totals.sort(key=lambda row: (-row["visitors"], -row["conversions"], row["name"]))
    return totals


def goal_stats(
    *,
    start: dt.datetime,
    end: dt.datetime,
    visits: QuerySet[VisitSummary] | None = None,
    range_visitors: int | None = None,
) -> list[dict]:
    """stats.json's ``goals``: the figures of GOAL_COLUMNS, revenue as a decimal string."""
    return [
        {
            **{column: row[column] for column in GOAL_COLUMNS},
            "revenue": None if row["revenue"] is None else str(row["revenue"]),
        }
        for row in goal_totals(start=start, end=end, visits=visits, range_visitors=range_visitors)
    ]
