# ruff: noqa: S608 - only the ORM's own SQL and column names are interpolated; values are params.
"""Read functions of the filtered dashboard: every figure from the per-visit table.

Rollups hold one dimension at a time, so they cannot answer "Chrome visits from news.example"; under
any filter each panel reads VisitSummary through ``visits_filtered`` instead. Each function returns
what its unfiltered twin in ``queries`` / ``event_queries`` returns, so panels, charts, exports
and stats.json take either.

Visit-level figures are those of the filtered visits (started in the range). Pageviews are those
visits' pageviews. Page-level figures (top pages) and events read raw rows belonging to the
filtered visits, so they cover the raw retention period only (TRACKER_RAW_RETENTION_DAYS).
"""

from __future__ import annotations

import datetime as dt

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
    _change,
    _fetch,
    _ratios,
)
from tracker.models import Event, TrackedSession, Visit, VisitSummary

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
    sums = _sums(visits)
    return {
        "visitors": sums["visitors"],
        "visits": sums["visits"],
        "pageviews": sums["pageviews"],
        "returning_visits": sums["returning_visits"],
        **_ratios(
            visits=sums["visits"],
            visit_pageviews=sums["pageviews"],
            bounces=sums["bounces"],
            duration=sums["duration_seconds"],
            returning=sums["returning_visits"],
        ),
    }


def headline_filtered(*, filters: Filters, start: dt.datetime, end: dt.datetime) -> dict:
    """headline_totals under filters: this period, the one before it (same filters), changes."""
    previous_start = start - (end - start)
    periods = {
        "current": _period_figures(visits_filtered(filters=filters, start=start, end=end)),
        "previous": _period_figures(
            visits_filtered(filters=filters, start=previous_start, end=start)
        ),
    }
    periods["change"] = {
        key: _change(periods["current"][key], periods["previous"][key])
        for key in periods["current"]
    }
    return periods


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


def pages_per_visit_filtered(*, filters: Filters, start: dt.datetime, end: dt.datetime) -> list:
    """The filtered visits by pageviews, in pages_per_visit_histogram's buckets."""
    rows = (
        visits_filtered(filters=filters, start=start, end=end)
        .values("pageviews")
        .annotate(total=Count("id"))
        .values_list("pageviews", "total")
    )
    lowest = sorted(BUCKET_LOWEST.items(), key=lambda item: item[1])
    counts = dict.fromkeys(PAGES_BUCKETS, 0)
    for pageviews, total in rows:
        bucket = next(name for name, least in reversed(lowest) if pageviews >= least)
        counts[bucket] += total
    return [{"bucket": bucket, "visits": counts[bucket]} for bucket in PAGES_BUCKETS]


def visits_per_visitor_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime
) -> list[dict]:
    """The visitors of the filtered visits by how many of those visits they made."""
    per_visitor = (
        visits_filtered(filters=filters, start=start, end=end)
        .values("tracking_id")
        .annotate(made=Count("id"))
        .values("made")
    )
    sql, params = per_visitor.query.sql_with_params()
    counts = dict(
        _fetch(f"SELECT made, count(*) FROM ({sql}) per_visitor GROUP BY made", list(params))
    )
    result = []
    for index, (label, least) in enumerate(VISITS_BUCKETS):
        most = VISITS_BUCKETS[index + 1][1] if index + 1 < len(VISITS_BUCKETS) else None
        result.append(
            {
                "bucket": label,
                "visitors": sum(
                    int(total)
                    for made, total in counts.items()
                    if made >= least and (most is None or made < most)
                ),
            }
        )
    return result


def busiest_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime, limit: int
) -> list[dict]:
    rows = visits_filtered(filters=filters, start=start, end=end).order_by(
        "-pageviews", "-duration_seconds", "tracking_id", "number"
    )
    return list(rows.values(*VISIT_FIELDS)[:limit])


def _breakdown_rows(
    visits: QuerySet[VisitSummary], *, field: str, limit: int | None, visitors: bool = False
) -> list[dict]:
    sums = {key: value for key, value in VISIT_SUMS.items() if key != "visitors" or visitors}
    rows = (
        visits.values(field)
        .annotate(**{f"total_{key}": value for key, value in sums.items()})
        .order_by("-total_visits", field)
    )
    if limit:
        rows = rows[:limit]
    result = []
    for row in rows:
        count = row["total_visits"]
        item = {
            "value": row[field],
            "visits": count,
            "pageviews": int(row["total_pageviews"]),
            "returning_visits": row["total_returning_visits"],
            "bounce_rate": row["total_bounces"] / count,
            "avg_visit_seconds": int(row["total_duration_seconds"]) / count,
        }
        if visitors:
            item["visitors"] = row["total_visitors"]
        result.append(item)
    return result


def breakdown_filtered(
    *,
    filters: Filters,
    start: dt.datetime,
    end: dt.datetime,
    dimensions: list[str],
    limit: int | None,
) -> dict[str, list[dict]]:
    """dimension_breakdown under filters: per dimension its top values, one query each."""
    visits = visits_filtered(filters=filters, start=start, end=end)
    return {
        dimension: _breakdown_rows(visits, field=dimension, limit=limit) for dimension in dimensions
    }


def countries_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime, limit: int = COUNTRIES_LIMIT
) -> list[dict]:
    """top_countries under filters: visits, distinct visitors, pageviews, bounce rate."""
    visits = visits_filtered(filters=filters, start=start, end=end)
    rows = _breakdown_rows(visits, field=Dimension.COUNTRY, limit=limit, visitors=True)
    return [
        {"country": row["value"], **{key: row[key] for key in ("visitors", "visits")}}
        | {key: row[key] for key in ("pageviews", "bounce_rate")}
        for row in rows
    ]


def pageviews_of(visits: QuerySet[VisitSummary], *, start: dt.datetime) -> QuerySet[Visit]:
    """The raw page views that lie within one of ``visits`` (between its first and last view)."""
    return Visit.objects.filter(
        Exists(
            visits.filter(
                tracking_id=OuterRef("tracking_id"),
                started_at__lte=OuterRef("visited_at"),
                ended_at__gte=OuterRef("visited_at"),
            )
        ),
        visited_at__gte=start,
    )


def top_pages_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime, limit: int | None
) -> list[dict]:
    """Paths by the filtered visits' raw page views, with their distinct visitors."""
    visits = visits_filtered(filters=filters, start=start, end=end)
    rows = (
        pageviews_of(visits, start=start)
        .values("path")
        .annotate(pageviews=Count("id"), visitors=Count("tracking_id", distinct=True))
        .order_by("-pageviews", "path")
        .values("path", "pageviews", "visitors")
    )
    return list(rows[:limit] if limit else rows)


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
    headline = headline_filtered(filters=filters, start=start, end=end)
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
        "visits_per_visitor_histogram": visits_per_visitor_filtered(
            filters=filters, start=start, end=end
        ),
        "pages_per_visit_histogram": pages_per_visit_filtered(
            filters=filters, start=start, end=end
        ),
        "countries": countries_filtered(filters=filters, start=start, end=end),
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
