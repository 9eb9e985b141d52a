# ruff: noqa: S608 - only the ORM's own SQL and column names are interpolated; values are params.
"""Read functions of the filtered dashboard: every figure from the per-visit table.

Rollups hold one dimension at a time, so they cannot answer "Chrome visits from news.example"; under
any filter each panel reads VisitSummary through ``visits_filtered`` instead. Each function returns
what its unfiltered twin in ``queries`` / ``event_queries`` returns, so panels, charts, exports
and stats.json take either.

Visit-level figures are those of the filtered visits (started in the range). Pageviews are those
visits' pageviews, and top pages count the paths of their lists of pages. Events read the raw
events belonging to the filtered visits, so they cover the raw retention period only
(TRACKER_RAW_RETENTION_DAYS).
"""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from dashboard.filters import Filters, next_visit_start, visits_filtered
from dashboard.queries import (
    BUCKET_LOWEST,
    COUNTRIES_LIMIT,
    HOURLY_UP_TO,
    PAGES_BUCKETS,
    VISIT_FIELDS,
    VISITOR_FIELDS,
    VISITS_BUCKETS,
    Dimension,
    _buckets,
    _fetch,
    period_figures,
    with_changes,
)
from tracker.models import Event, PagePath, TrackedSession, VisitSummary

VISIT_SUMS = {
    "visits": Count("id"),
    "visitors": Count("tracking_id", distinct=True),
    "pageviews": Sum("pageviews"),
    "bounces": Count("id", filter=Q(pageviews=1)),
    "duration_seconds": Sum("duration_seconds"),
    "returning_visits": Count("id", filter=Q(number__gt=1)),
}


def _sums(visits: QuerySet[VisitSummary]) -> dict[str, int]:
    # int(): PostgreSQL sums as numeric or bigint; None where there is no row. The aliases must
    # not be field names (the aggregates' filters name fields).
    totals = visits.aggregate(**{f"total_{key}": value for key, value in VISIT_SUMS.items()})
    return {key.removeprefix("total_"): int(value or 0) for key, value in totals.items()}


def _period_figures(visits: QuerySet[VisitSummary]) -> dict:
    return _figures(_sums(visits))


def _figures(sums: dict[str, int]) -> dict:
    return period_figures(visit_sums=sums, visitors=sums["visitors"], pageviews=sums["pageviews"])


def headline_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime, overview: dict | None = None
) -> dict:
    """headline_totals under filters: this period, the one before it (same filters), changes.

    ``overview``: this range's visit_overview, when already read.
    """
    previous_start = start - (end - start)
    current = (
        _figures(overview["total"])
        if overview is not None
        else _period_figures(visits_filtered(filters=filters, start=start, end=end))
    )
    periods = {
        "current": current,
        "previous": _period_figures(
            visits_filtered(filters=filters, start=previous_start, end=start)
        ),
    }
    return with_changes(periods)


def timeseries_filtered(*, filters: Filters, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """Pageviews, visits and distinct visitors of the filtered visits per hour or local day."""
    hourly = end - start <= HOURLY_UP_TO
    truncate = TruncHour if hourly else TruncDay
    rows = (
        visits_filtered(filters=filters, start=start, end=end)
        .annotate(bucket=truncate("started_at", tzinfo=timezone.get_current_timezone()))
        .values("bucket")
        .annotate(
            total_pageviews=Sum("pageviews"),
            total_visits=Count("id"),
            total_visitors=Count("tracking_id", distinct=True),
        )
        .values_list("bucket", "total_pageviews", "total_visits", "total_visitors")
    )
    found = {moment: totals for moment, *totals in rows}
    return [
        {
            "t": moment,
            "pageviews": int(found.get(moment, (0, 0, 0))[0]),
            "visits": found.get(moment, (0, 0, 0))[1],
            "visitors": found.get(moment, (0, 0, 0))[2],
        }
        for moment in _buckets(start=start, end=end, hourly=hourly)
    ]


OVERVIEW_DIMENSIONS = [
    Dimension.ENTRY_PATH,
    Dimension.EXIT_PATH,
    Dimension.REFERRER,
    Dimension.UTM_SOURCE,
    Dimension.UTM_MEDIUM,
    Dimension.UTM_CAMPAIGN,
    Dimension.BROWSER,
    Dimension.OS,
    Dimension.DEVICE,
    Dimension.COUNTRY,
]
_MEASURES = (
    "count(*), {visitors}, sum(pageviews), sum(CASE WHEN pageviews = 1 THEN 1 ELSE 0 END), "
    "sum(duration_seconds), sum(CASE WHEN number > 1 THEN 1 ELSE 0 END)"
)
_KEYS = ["visits", "visitors", "pageviews", "bounces", "duration_seconds", "returning_visits"]


def visit_overview(
    *, filters: Filters, start: dt.datetime, end: dt.datetime, limit: int | None
) -> dict:
    """Every visit-level figure of the range under filters from one read of the filtered visits.

    The filters (EXISTS over raw page views, say) are evaluated once into a CTE, which both
    databases materialize as it is read several times; each figure then groups that: totals, the
    visitors' first visits, pages per visit, visits per visitor and the top ``limit`` values of
    every dimension (distinct visitors for countries only). Returns {"total": sums, "first": sums,
    "pages": {pageviews: visits}, "made": {visits made: visitors}, dimension: [rows]}.
    """
    columns = ["tracking_id", "number", "pageviews", "duration_seconds", *OVERVIEW_DIMENSIONS]
    visits = visits_filtered(filters=filters, start=start, end=end).values(*columns)
    base, base_params = visits.query.sql_with_params()
    with_visitors = _MEASURES.format(visitors="count(DISTINCT tracking_id)")
    without = _MEASURES.format(visitors="0")
    parts = [
        # Its visitors are the rows of "made" (a distinct count here would sort every visit).
        f"SELECT 'total', '', {without} FROM filtered",
        f"SELECT 'first', '', {without} FROM filtered WHERE number = 1",
        f"SELECT 'pages', CAST(pageviews AS TEXT), {without} FROM filtered GROUP BY pageviews",
        "SELECT 'made', CAST(made AS TEXT), count(*), 0, 0, 0, 0, 0 FROM ("
        "SELECT count(*) AS made FROM filtered GROUP BY tracking_id) per_visitor GROUP BY made",
    ]
    params: list = []
    for index, dimension in enumerate(OVERVIEW_DIMENSIONS):
        measures = with_visitors if dimension == Dimension.COUNTRY else without
        ranked = (
            f"SELECT '{dimension}', {dimension}, {measures} FROM filtered GROUP BY {dimension} "
            f"ORDER BY count(*) DESC, {dimension}"
        )
        if limit:
            ranked, params = f"{ranked} LIMIT %s", [*params, limit]
        parts.append(f"SELECT * FROM ({ranked}) ranked_{index}")
    sql = f"WITH filtered AS ({base}) " + " UNION ALL ".join(parts)
    overview: dict = {"pages": {}, "made": {}, **{d: [] for d in OVERVIEW_DIMENSIONS}}
    for kind, key, *values in _fetch(sql, [*base_params, *params]):
        # int(): PostgreSQL sums as numeric or bigint; None for the sums of no row.
        sums = dict(zip(_KEYS, (int(value or 0) for value in values), strict=True))
        if kind in ("total", "first"):
            overview[kind] = sums
        elif kind in ("pages", "made"):
            overview[kind][int(key)] = sums["visits"]
        else:
            overview[kind].append({"value": key, **sums})
    if "total" in overview:
        overview["total"]["visitors"] = sum(overview["made"].values())
    return overview


def _ranked_rows(rows: list[dict], *, visitors: bool = False) -> list[dict]:
    """visit_overview's rows of one dimension as dimension_breakdown gives them."""
    return [
        {
            "value": row["value"],
            "visits": row["visits"],
            "pageviews": row["pageviews"],
            "returning_visits": row["returning_visits"],
            "bounce_rate": row["bounces"] / row["visits"],
            "avg_visit_seconds": row["duration_seconds"] / row["visits"],
            **({"visitors": row["visitors"]} if visitors else {}),
        }
        for row in rows
    ]


def overview_breakdowns(overview: dict, dimensions: list[str]) -> dict[str, list[dict]]:
    return {dimension: _ranked_rows(overview[dimension]) for dimension in dimensions}


def overview_countries(overview: dict) -> list[dict]:
    return [
        {key: row[key] for key in ("visitors", "visits", "pageviews", "bounce_rate")}
        | {"country": row["value"]}
        for row in _ranked_rows(overview[Dimension.COUNTRY], visitors=True)
    ]


def overview_pages_histogram(overview: dict) -> list[dict]:
    lowest = sorted(BUCKET_LOWEST.items(), key=lambda item: item[1])
    counts = dict.fromkeys(PAGES_BUCKETS, 0)
    for pageviews, visits in overview["pages"].items():
        bucket = next(name for name, least in reversed(lowest) if pageviews >= least)
        counts[bucket] += visits
    return [{"bucket": bucket, "visits": counts[bucket]} for bucket in PAGES_BUCKETS]


def overview_visitors_histogram(overview: dict) -> list[dict]:
    result = []
    for index, (label, least) in enumerate(VISITS_BUCKETS):
        most = VISITS_BUCKETS[index + 1][1] if index + 1 < len(VISITS_BUCKETS) else None
        visitors = sum(
            count
            for made, count in overview["made"].items()
            if made >= least and (most is None or made < most)
        )
        result.append({"bucket": label, "visitors": visitors})
    return result


def busiest_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime, limit: int
) -> list[dict]:
    rows = visits_filtered(filters=filters, start=start, end=end).order_by(
        "-pageviews", "-duration_seconds", "tracking_id", "number"
    )
    return list(rows.values(*VISIT_FIELDS)[:limit])


def top_pages_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime, limit: int | None
) -> list[dict]:
    """Paths by the page views of the filtered visits (their lists of pages), with their
    distinct visitors."""
    visits = visits_filtered(filters=filters, start=start, end=end)
    chosen, params = visits.values("tracking_id", "pages").query.sql_with_params()
    if connection.vendor == "postgresql":
        listed, page = "CROSS JOIN LATERAL unnest(s.pages) AS listed(page)", "listed.page"
    else:
        listed, page = "JOIN json_each(s.pages) listed", "listed.value"
    sql = f"""
        SELECT p.path, count(*) AS pageviews, count(DISTINCT s.tracking_id) AS visitors
        FROM ({chosen}) s {listed} JOIN {PagePath._meta.db_table} p ON p.id = {page}
        GROUP BY p.path
        ORDER BY pageviews DESC, p.path
    """
    if limit:
        sql += " LIMIT %s"
        params = (*params, limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            {"path": path, "pageviews": pageviews, "visitors": visitors}
            for path, pageviews, visitors in cursor
        ]


def events_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime, limit: int | None = None
) -> list[dict]:
    """event_totals under filters: the raw events that belong to a filtered visit (from its
    start to the visitor's next visit), per name: distinct visitors and count."""
    visits = visits_filtered(filters=filters, start=start, end=end).annotate(
        window_end=next_visit_start()
    )
    rows = (
        Event.objects.filter(
            Exists(
                visits.filter(
                    tracking_id=OuterRef("tracking_id"),
                    started_at__lte=OuterRef("occurred_at"),
                    window_end__gt=OuterRef("occurred_at"),
                )
            ),
            occurred_at__gte=start,
        )
        .values("name")
        .annotate(visitors=Count("tracking_id", distinct=True), count=Count("id"))
        .order_by("-visitors", "-count", "name")
        .values("name", "visitors", "count")
    )
    return list(rows[:limit] if limit else rows)


def _new_visits(*, filters: Filters, start: dt.datetime, end: dt.datetime) -> QuerySet:
    """The visitors' first visits among the filtered ones: the visitors table's rows."""
    return visits_filtered(filters=filters, start=start, end=end).filter(number=1)


def new_visitor_count_filtered(*, filters: Filters, start: dt.datetime, end: dt.datetime) -> int:
    return _new_visits(filters=filters, start=start, end=end).count()


def visitors_page_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime, page: int, per_page: int
) -> list[dict]:
    """One page of the visitors whose first visit started in the range and passes the filters."""
    offset = (page - 1) * per_page
    first_visits = _new_visits(filters=filters, start=start, end=end).values("tracking_id")
    rows = TrackedSession.objects.filter(tracking_id__in=first_visits).order_by(
        "-first_seen", "tracking_id"
    )
    return list(rows.values(*VISITOR_FIELDS)[offset : offset + per_page])


def visits_for_export_filtered(*, filters: Filters, start: dt.datetime, end: dt.datetime):
    rows = visits_filtered(filters=filters, start=start, end=end).order_by(
        "started_at", "tracking_id", "number"
    )
    return rows.values_list(*VISIT_FIELDS).iterator(chunk_size=2000)


def stats_filtered(*, filters: Filters, start: dt.datetime, end: dt.datetime) -> dict:
    """stats_from_rollups' figures (and "events") under filters."""
    overview = visit_overview(filters=filters, start=start, end=end, limit=COUNTRIES_LIMIT)
    headline = headline_filtered(filters=filters, start=start, end=end, overview=overview)
    current = headline["current"]
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "path": None,
        "visitors": current["visitors"],
        "sessions": current["visitors"],
        "visits": current["visits"],
        "pageviews": current["pageviews"],
        "views_per_visit": current["views_per_visit"],
        "bounce_rate": current["bounce_rate"],
        "avg_visit_seconds": current["avg_visit_seconds"],
        "returning_visits": current["returning_visits"],
        "returning_share": current["returning_share"],
        "previous": headline["previous"],
        "change": headline["change"],
        "top_pages": top_pages_filtered(filters=filters, start=start, end=end, limit=10),
        "visits_per_visitor_histogram": overview_visitors_histogram(overview),
        "pages_per_visit_histogram": overview_pages_histogram(overview),
        "countries": overview_countries(overview),
        "timeseries": [
            {**point, "t": point["t"].isoformat()}
            for point in timeseries_filtered(filters=filters, start=start, end=end)
        ],
        "events": events_filtered(filters=filters, start=start, end=end),
        "filters": [
            {"dimension": item.dimension, "operator": item.operator, "value": item.value}
            for item in filters
        ],
    }
