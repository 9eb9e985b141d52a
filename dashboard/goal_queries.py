# ruff: noqa: S608 - only table and column names are interpolated; values are parameters.
"""Goal figures of a range, read from the materialized hits (GoalHit) and the per-visit table,
never from the raw rows: their cost follows the hits of the range.

For each goal, over its hits with ``reached_at`` in [start, end):

- visitors: distinct visitors with a hit;
- conversions: visits with at least one hit (once per visit). A hit belongs to the visit of its
  visitor that started last at or before it (the first visit for a hit before any);
- conversion_rate: visitors / the range's visitors (the dashboard's visitors card);
- revenue: the sum of the hits' revenue (None when no hit has one), a Decimal;
  average_revenue: revenue / conversions, to 4 decimal places.

Without a filter the hits are grouped per (goal, visitor); only the groups whose hits straddle
a visit start look up each hit's visit (see ``_unfiltered_counts``). The cost follows the hits
of the range: see docs/benchmarks.md for what that means at 10M page views.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import connection, transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from dashboard.queries import _fetch, visit_count, visitor_count
from tracker.models import Goal, GoalHit, VisitSummary

GOAL_COLUMNS = ["name", "visitors", "conversions", "conversion_rate", "revenue"]
REVENUE_PLACES = Decimal("0.0001")  # what GoalHit.revenue holds

HIT = GoalHit._meta.db_table
VISITS = VisitSummary._meta.db_table


def _revenue(value) -> Decimal | None:
    """A sum from the database as an exact Decimal (SQLite sums the stored decimals as REAL)."""
    if value is None:
        return None
    return Decimal(str(value)).quantize(REVENUE_PLACES)


def _unfiltered_counts(*, start: dt.datetime, end: dt.datetime) -> dict[int, tuple]:
    """Per goal id: (visitors, conversions, revenue) of its hits in [start, end).

    One hashed pass groups the hits per (goal, visitor): each group is a visitor and at least
    one conversion. Only groups with a visit boundary between their first and last hit (a visit
    other than the visitor's first starting after the first hit, at or before the last) sort
    their hits among those visit starts, to count their distinct visits.
    """
    sql = f"""
        WITH h AS (
            SELECT goal_id, tracking_id, reached_at, revenue FROM {HIT}
            WHERE reached_at >= %s AND reached_at < %s
        ), g AS (
            SELECT goal_id, tracking_id, count(*) AS hits, min(reached_at) AS first_at,
                max(reached_at) AS last_at, sum(revenue) AS revenue
            FROM h GROUP BY goal_id, tracking_id
        ), split AS (
            SELECT goal_id, tracking_id, first_at, last_at FROM g
            WHERE hits > 1 AND EXISTS (
                SELECT 1 FROM {VISITS} s
                WHERE s.tracking_id = g.tracking_id AND s.number > 1
                    AND s.started_at > g.first_at AND s.started_at <= g.last_at
            )
        ), split_visits AS (
            -- Those groups' hits and the visit starts among them in one ordered pass: the
            -- starts before a hit number its visit (a start at a hit's very time comes first).
            SELECT goal_id, count(*) AS visits FROM (
                SELECT DISTINCT goal_id, tracking_id, boundaries FROM (
                    SELECT goal_id, tracking_id, is_hit, sum(1 - is_hit) OVER (
                        PARTITION BY goal_id, tracking_id ORDER BY at, is_hit
                        ROWS UNBOUNDED PRECEDING
                    ) AS boundaries
                    FROM (
                        SELECT h.goal_id, h.tracking_id, h.reached_at AS at, 1 AS is_hit
                        FROM h JOIN split ON split.goal_id = h.goal_id
                            AND split.tracking_id = h.tracking_id
                        UNION ALL
                        SELECT split.goal_id, split.tracking_id, s.started_at, 0
                        FROM split JOIN {VISITS} s ON s.tracking_id = split.tracking_id
                            AND s.number > 1 AND s.started_at > split.first_at
                            AND s.started_at <= split.last_at
                    ) moments
                ) numbered WHERE is_hit = 1
            ) v GROUP BY goal_id
        ), split_visitors AS (
            SELECT goal_id, count(*) AS visitors FROM split GROUP BY goal_id
        ), totals AS (
            SELECT goal_id, count(*) AS visitors, sum(revenue) AS revenue FROM g GROUP BY goal_id
        )
        SELECT t.goal_id, t.visitors,
            t.visitors - coalesce(sv.visitors, 0) + coalesce(vv.visits, 0), t.revenue
        FROM totals t
        LEFT JOIN split_visitors sv ON sv.goal_id = t.goal_id
        LEFT JOIN split_visits vv ON vv.goal_id = t.goal_id
    """
    adapt = connection.ops.adapt_datetimefield_value
    params = [adapt(start), adapt(end)]
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            # Estimated as costly (a probe per hit), it would be JIT-compiled: 0.9 s for nothing.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '64MB'")  # the per-visitor groups, in memory
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    else:
        rows = _fetch(sql, params)
    return {
        goal_id: (int(visitors), int(conversions), _revenue(revenue))
        for goal_id, visitors, conversions, revenue in rows
    }


def _filtered_counts(
    *, start: dt.datetime, end: dt.datetime, visits: QuerySet[VisitSummary]
) -> dict[int, tuple]:
    """Per goal id: (visitors, conversions, revenue) of its hits in [start, end) whose visit is
    one of ``visits``."""
    visit_of = (
        VisitSummary.objects.filter(
            tracking_id=OuterRef("tracking_id"), started_at__lte=OuterRef("reached_at")
        )
        .order_by("-number")
        .values("id")[:1]
    )
    first_visit = VisitSummary.objects.filter(tracking_id=OuterRef("tracking_id"), number=1)
    rows = (
        GoalHit.objects.filter(reached_at__gte=start, reached_at__lt=end)
        .annotate(visit_id=Coalesce(Subquery(visit_of), Subquery(first_visit.values("id")[:1])))
        .filter(visit_id__in=visits.values("id"))
        .values("goal_id")
        .annotate(
            visitors=Count("tracking_id", distinct=True),
            conversions=Count("visit_id", distinct=True),
            revenue=Sum("revenue"),
        )
        .values_list("goal_id", "visitors", "conversions", "revenue")
    )
    return {
        goal_id: (visitors, conversions, _revenue(revenue))
        for goal_id, visitors, conversions, revenue in rows
    }


def goal_totals(
    *, start: dt.datetime, end: dt.datetime, visits: QuerySet[VisitSummary] | None = None
) -> list[dict]:
    """Every goal's figures in [start, end), most converted visitors first (see the top).

    With ``visits`` (the range's visits that pass the filters), only hits of those visits count
    and the rate is over their visitors.
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
    *, start: dt.datetime, end: dt.datetime, visits: QuerySet[VisitSummary] | None = None
) -> list[dict]:
    """stats.json's ``goals``: the figures of GOAL_COLUMNS, revenue as a decimal string."""
    return [
        {
            **{column: row[column] for column in GOAL_COLUMNS},
            "revenue": None if row["revenue"] is None else str(row["revenue"]),
        }
        for row in goal_totals(start=start, end=end, visits=visits)
    ]
