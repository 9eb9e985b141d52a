"""Read functions behind the dashboard: rollups for every range, raw visits only for "live".

A visit belongs to a range by the hour it started. Figures of any range come from the rollups
(whole UTC days from PageDaily, VisitDaily and VisitorDaily, the hours at a range's edges from
their hourly tables) and the per-visit and per-visitor tables (through their start indexes), so
their cost grows with the number of days (or hours), paths and rows shown, never with the raw
page-view table.

Visitors of a range are exact: VisitorHourly counts visits by the start hour of their
visitor's earlier visits, so "visits whose previous visit started before the range" are the
range's distinct visitors (see VisitorCounts).

Pageviews follow their visit: without a filter they are the pageviews of the visits started in
the range (so views per visit is exactly pageviews / visits, and one daily row per day answers
every headline figure). With a path filter, page-level figures (pageviews, the time series'
pageviews, top pages) are the views of that path in the range by page-view time, and
visit-level figures are those of the visits that entered on it. Top pages always count views by
page-view time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from bisect import bisect_right
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.db import connection, models
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from tracker.models import (
    DEVICE_FIELDS,
    SOURCE_FIELDS,
    VISIT_MEASURES,
    CountryVisitorDaily,
    CountryVisitorHourly,
    PageDaily,
    PageHourly,
    PageVisitorDaily,
    PageVisitorHourly,
    TrackedSession,
    Visit,
    VisitDaily,
    VisitHourly,
    VisitorDaily,
    VisitorHourly,
    VisitSummary,
)
from tracker.rollups import visits_watermark

Dimension = VisitHourly.Dimension
PAGES_BUCKETS = ["1", "2", "3", "4-5", "6-10", "11-20", "21+"]
# Visits per visitor: each bucket's label and the fewest visits in it.
VISITS_BUCKETS = [("1", 1), ("2", 2), ("3", 3), ("4-5", 4), ("6-10", 6), ("11+", 11)]
LIVE_WINDOW = dt.timedelta(minutes=5)
HOURLY_UP_TO = dt.timedelta(days=2)
COUNTRIES_LIMIT = 50  # stats.json's; the dashboard shows fewer


def _change(current: float | None, previous: float | None) -> float | None:
    """Relative change against the previous period; None where there is nothing to compare."""
    if current is None or previous is None:
        return None
    if previous == 0:
        return 0.0 if current == 0 else None
    return (current - previous) / previous


def _utc_day(moment: dt.datetime) -> dt.datetime:
    """The UTC midnight at or before ``moment``: where a daily rollup row starts."""
    return moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _rollup_parts(
    hourly: QuerySet, daily: QuerySet, *, start: dt.datetime, end: dt.datetime
) -> list[tuple[QuerySet, str]]:
    """The rollup rows that cover [start, end) exactly, each part with its time column's name.

    Whole UTC days inside the range come from the daily table (30 rows a month per key rather
    than 720); the hours at either edge come from the hourly one.
    """
    first_day = _utc_day(start)
    if first_day < start:
        first_day += dt.timedelta(days=1)
    last_day = _utc_day(end)
    if first_day >= last_day:
        return [(hourly.filter(hour__gte=start, hour__lt=end), "hour")]
    edges = [
        Q(hour__gte=low, hour__lt=high)
        for low, high in ((start, first_day), (last_day, end))
        if low < high
    ]
    parts = [(hourly.filter(reduce(or_, edges)), "hour")] if edges else []
    return [*parts, (daily.filter(day__gte=first_day, day__lt=last_day), "day")]


def _rollup_rows(
    hourly: QuerySet, daily: QuerySet, *, start: dt.datetime, end: dt.datetime, fields: list[str]
) -> tuple[str, list]:
    """SQL and parameters of ``fields`` of the rollup rows that cover [start, end) exactly."""
    compiled = [
        part.values(*fields).query.sql_with_params()
        for part, _ in _rollup_parts(hourly, daily, start=start, end=end)
    ]
    return " UNION ALL ".join(sql for sql, _ in compiled), [
        param for _, params in compiled for param in params
    ]


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _visit_rows(model: type[VisitHourly | VisitDaily], *, path: str | None) -> QuerySet:
    """Visit rollup rows for all visits, or for the visits that entered on ``path``."""
    if path:
        return model.objects.filter(dimension=Dimension.ENTRY_PATH, value=path)
    return model.objects.filter(dimension=Dimension.ALL, value="")


def _page_rows(model: type[PageHourly | PageDaily], *, path: str | None) -> QuerySet:
    rows = model.objects.all()
    return rows.filter(path=path) if path else rows


def _period_sums(
    hourly: QuerySet, daily: QuerySet, *, start: dt.datetime, end: dt.datetime, fields: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Sums of ``fields`` over [start, end) and over the period of the same length before it.

    One query; each period reads its whole days from the daily rollup, so a month costs about
    30 rows per period however busy the site is.
    """
    previous_start = start - (end - start)
    current_rows, current_params = _rollup_rows(hourly, daily, start=start, end=end, fields=fields)
    previous_rows, previous_params = _rollup_rows(
        hourly, daily, start=previous_start, end=start, fields=fields
    )
    sums = ", ".join(f"coalesce(sum({field}), 0)" for field in fields)
    # Only column names and the ORM's own SQL are interpolated; values are parameters.
    sql = f"""SELECT * FROM (SELECT {sums} FROM ({current_rows}) rollup) current_period
        CROSS JOIN (SELECT {sums} FROM ({previous_rows}) rollup) previous_period"""  # noqa: S608
    row = _fetch(sql, [*current_params, *previous_params])[0]
    # int(): PostgreSQL sums a bigint column as numeric.
    current, previous = row[: len(fields)], row[len(fields) :]
    return (
        {field: int(value) for field, value in zip(fields, current, strict=True)},
        {field: int(value) for field, value in zip(fields, previous, strict=True)},
    )


def _ratios(
    *, visits: int, visit_pageviews: int, bounces: int, duration: int, returning: int
) -> dict:
    return {
        "views_per_visit": round(visit_pageviews / visits, 2) if visits else None,
        "bounce_rate": round(bounces / visits, 4) if visits else None,
        "avg_visit_seconds": round(duration / visits, 1) if visits else None,
        "returning_share": round(returning / visits, 4) if visits else None,
    }


def earlier_hour_sums(
    hourly: type[models.Model],
    daily: type[models.Model],
    *,
    key: str,
    measure: str,
    start: dt.datetime,
    end: dt.datetime,
    keys: list | None = None,
) -> dict:
    """Per ``key``: the sum of ``measure`` of an earlier-hour rollup (VisitorCounts,
    PageVisitorCounts, CountryVisitorCounts, EventVisitorCounts) over [start, end), counting only
    the rows whose earlier hour lies in the range too: what the range's distinct visitors lose
    to repeats. ``keys`` narrows the keys read."""
    narrow = {"previous_hour__gte": start, **({f"{key}__in": keys} if keys is not None else {})}
    rows, params = _rollup_rows(
        hourly.objects.filter(**narrow),
        daily.objects.filter(**narrow),
        start=start,
        end=end,
        fields=[key, measure],
    )
    sql = f"SELECT {key}, sum({measure}) FROM ({rows}) rollup GROUP BY {key}"  # noqa: S608
    return {value: int(total) for value, total in _fetch(sql, params)}


def repeat_visits(*, start: dt.datetime, end: dt.datetime) -> dict[int, int]:
    """Per lag k: the visits started in [start, end) whose visitor's k-th earlier visit did too.

    A visitor with m visits in the range has max(0, m - k) of them (see VisitorCounts). The
    headline and the visits-per-visitor histogram both need them: a caller computing both reads
    them once and passes them in.
    """
    return earlier_hour_sums(
        VisitorHourly, VisitorDaily, key="lag", measure="visits", start=start, end=end
    )


def _visitors_at_least(*, visits: int, repeats: dict[int, int], least: int) -> int:
    """Visitors with at least ``least`` visits in the range: lag least-1 minus lag least."""
    above = visits if least == 1 else repeats.get(least - 1, 0)
    return above - repeats.get(least, 0)


def _filtered_visits(*, start: dt.datetime, end: dt.datetime, path: str | None) -> QuerySet:
    rows = VisitSummary.objects.filter(started_at__gte=start, started_at__lt=end)
    return rows.filter(entry_path=path) if path else rows


def visitor_count(
    *,
    start: dt.datetime,
    end: dt.datetime,
    visits: int,
    path: str | None,
    repeats: dict[int, int] | None = None,
) -> int:
    """Distinct visitors with a visit started in [start, end) (entered on ``path``).

    ``visits`` is that range's visit count (from the rollups), ``repeats`` its repeat_visits
    when the caller has them. Without a filter, two sums of VisitorHourly rows; with one, a
    distinct count over the per-visit table.
    """
    if path:
        rows = _filtered_visits(start=start, end=end, path=path)
        return rows.aggregate(visitors=Count("tracking_id", distinct=True))["visitors"]
    if repeats is None:
        repeats = repeat_visits(start=start, end=end)
    return _visitors_at_least(visits=visits, repeats=repeats, least=1)


def headline_totals(
    *,
    start: dt.datetime,
    end: dt.datetime,
    path: str | None = None,
    repeats: dict[int, int] | None = None,
) -> dict[str, dict]:
    """The headline figures of [start, end) and of the period of the same length before it;
    ``repeats``: [start, end)'s repeat_visits, when the caller has them."""
    visit_sums = _period_sums(
        _visit_rows(VisitHourly, path=path),
        _visit_rows(VisitDaily, path=path),
        start=start,
        end=end,
        fields=VISIT_MEASURES,
    )
    if path:
        page_sums = _period_sums(
            _page_rows(PageHourly, path=path),
            _page_rows(PageDaily, path=path),
            start=start,
            end=end,
            fields=["pageviews"],
        )
    else:
        page_sums = visit_sums  # pageviews follow their visit (see the top)
    periods = {}
    bounds = {"current": (start, end), "previous": (start - (end - start), start)}
    for name, visits, pages in zip(bounds, visit_sums, page_sums, strict=True):
        low, high = bounds[name]
        visitors = visitor_count(
            start=low,
            end=high,
            visits=visits["visits"],
            path=path,
            repeats=repeats if name == "current" else None,
        )
        periods[name] = period_figures(
            visit_sums=visits, visitors=visitors, pageviews=pages["pageviews"]
        )
    return with_changes(periods)


def period_figures(*, visit_sums: dict[str, int], visitors: int, pageviews: int) -> dict:
    """A period's headline figures from its visits' sums (VISIT_MEASURES), its distinct
    visitors and its pageviews (those of its visits, or of a page under a path filter)."""
    return {
        "visitors": visitors,
        "visits": visit_sums["visits"],
        "pageviews": pageviews,
        "returning_visits": visit_sums["returning_visits"],
        **_ratios(
            visits=visit_sums["visits"],
            visit_pageviews=visit_sums["pageviews"],
            bounces=visit_sums["bounces"],
            duration=visit_sums["duration_seconds"],
            returning=visit_sums["returning_visits"],
        ),
    }


def with_changes(periods: dict[str, dict]) -> dict[str, dict]:
    """Add each figure's change from the "previous" period to the "current" one."""
    periods["change"] = {
        key: _change(periods["current"][key], periods["previous"][key])
        for key in periods["current"]
    }
    return periods


def _range_sums(
    hourly: QuerySet, daily: QuerySet, *, start: dt.datetime, end: dt.datetime, fields: list[str]
) -> dict[str, int]:
    """Sums of ``fields`` of the rollup rows that cover [start, end)."""
    rows, params = _rollup_rows(hourly, daily, start=start, end=end, fields=fields)
    sums = ", ".join(f"coalesce(sum({field}), 0)" for field in fields)
    sql = f"SELECT {sums} FROM ({rows}) rollup"  # noqa: S608
    # int(): PostgreSQL sums a bigint column as numeric.
    return {field: int(value) for field, value in zip(fields, _fetch(sql, params)[0], strict=True)}


def visit_count(*, start: dt.datetime, end: dt.datetime, path: str | None = None) -> int:
    """Visits started in [start, end) (entered on ``path``), counted from the rollups."""
    return _range_sums(
        _visit_rows(VisitHourly, path=path),
        _visit_rows(VisitDaily, path=path),
        start=start,
        end=end,
        fields=["visits"],
    )["visits"]


def top_pages(
    *, start: dt.datetime, end: dt.datetime, limit: int | None, path: str | None = None
) -> list[dict]:
    """Paths by pageviews, with their distinct visitors over the whole range (exact).

    A path's visitors are the sum of its hourly distinct visitors less those who had viewed it
    in an earlier hour of the range (PageVisitorCounts).
    """
    hourly, daily = PageHourly.objects.all(), PageDaily.objects.all()
    if path:
        hourly, daily = hourly.filter(path=path), daily.filter(path=path)
    rows, params = _rollup_rows(
        hourly, daily, start=start, end=end, fields=["path", "pageviews", "sessions"]
    )
    # Only column names and the ORM's own SQL are interpolated; values are parameters.
    sql = f"""SELECT path, sum(pageviews) AS total_pageviews, sum(sessions) AS total_sessions
        FROM ({rows}) rollup GROUP BY path ORDER BY total_pageviews DESC, path"""  # noqa: S608
    if limit:
        sql, params = f"{sql} LIMIT %s", [*params, limit]
    pages = _fetch(sql, params)
    shown = [row[0] for row in pages] if limit or path else None
    repeats = (
        earlier_hour_sums(
            PageVisitorHourly,
            PageVisitorDaily,
            key="path",
            measure="visitors",
            start=start,
            end=end,
            keys=shown,
        )
        if pages
        else {}
    )
    return [
        {"path": page, "pageviews": pageviews, "visitors": hourly_visitors - repeats.get(page, 0)}
        for page, pageviews, hourly_visitors in pages
    ]


def pages_per_visit_histogram(*, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """Visits started in the range by their number of pageviews, every bucket present."""
    rows, params = _rollup_rows(
        VisitHourly.objects.filter(dimension=Dimension.PAGES),
        VisitDaily.objects.filter(dimension=Dimension.PAGES),
        start=start,
        end=end,
        fields=["value", "visits"],
    )
    sql = f"SELECT value, sum(visits) FROM ({rows}) rollup GROUP BY value"  # noqa: S608
    counts = dict(_fetch(sql, params))
    return [{"bucket": bucket, "visits": counts.get(bucket, 0)} for bucket in PAGES_BUCKETS]


def visits_per_visitor_histogram(
    *,
    start: dt.datetime,
    end: dt.datetime,
    visits: int | None = None,
    repeats: dict[int, int] | None = None,
) -> list[dict]:
    """The range's visitors by how many visits they started in it (1, 2, 3, 4-5, 6-10, 11+);
    ``visits`` and ``repeats`` (repeat_visits) when the caller has them."""
    if visits is None:
        visits = visit_count(start=start, end=end)
    if repeats is None:
        repeats = repeat_visits(start=start, end=end)
    at_least = [
        _visitors_at_least(visits=visits, repeats=repeats, least=least)
        for _, least in VISITS_BUCKETS
    ]
    return [
        {
            "bucket": label,
            "visitors": count - (at_least[index + 1] if index + 1 < len(at_least) else 0),
        }
        for index, ((label, _), count) in enumerate(zip(VISITS_BUCKETS, at_least, strict=True))
    ]


def _buckets(*, start: dt.datetime, end: dt.datetime, hourly: bool) -> list[dt.datetime]:
    """Every bucket start of the range, so that quiet hours or days show as zero."""
    if hourly:
        count = int((end - start) / dt.timedelta(hours=1))
        return [start + dt.timedelta(hours=index) for index in range(count)]
    first_day = timezone.localdate(start)
    last_day = timezone.localdate(end - dt.timedelta(microseconds=1))
    days = (last_day - first_day).days + 1
    return [
        timezone.make_aware(dt.datetime.combine(first_day + dt.timedelta(days=index), dt.time()))
        for index in range(days)
    ]


def _days_are_utc_days(buckets: list[dt.datetime]) -> bool:
    """True when every local day bucket is also a UTC day (a site on UTC, or London in winter)."""
    if not buckets:
        return False
    boundaries = [*buckets, buckets[-1] + dt.timedelta(days=1)]
    return all(moment.utcoffset() == dt.timedelta(0) for moment in boundaries)


def timeseries(*, start: dt.datetime, end: dt.datetime, path: str | None = None) -> list[dict]:
    """Pageviews, visits and visitors per hour up to two days, else per local day (see the top).

    Where local days are UTC days, whole days come from the daily rollups; elsewhere a local day
    straddles two rows of them, so its hours are summed. A bucket's visitors are its visits less
    those whose visitor's previous visit started in the same bucket.
    """
    hourly = end - start <= HOURLY_UP_TO
    buckets = _buckets(start=start, end=end, hourly=hourly)
    whole_days = not hourly and _days_are_utc_days(buckets)
    zone = timezone.get_current_timezone()

    def parts_of(hourly_rows, daily_rows):
        if whole_days:
            return _rollup_parts(hourly_rows, daily_rows, start=start, end=end)
        return [(hourly_rows.filter(hour__gte=start, hour__lt=end), "hour")]

    def bucket_of(when: str):
        return F(when) if hourly else TruncDay(when, tzinfo=zone)

    def per_bucket(parts, *fields: str) -> dict[dt.datetime, tuple[int, ...]]:
        grouped = [
            part.values("bucket")
            .annotate(**{f"total_{field}": Sum(field) for field in fields})
            .values_list("bucket", *(f"total_{field}" for field in fields))
            for part in parts
        ]
        # The edge hours lie in the range's partial days, never in a whole day read from the
        # daily rollup: each bucket comes from one part only.
        rows = grouped[0].union(*grouped[1:], all=True) if len(grouped) > 1 else grouped[0]
        return {moment: totals for moment, *totals in rows}

    def rollup(hourly_rows, daily_rows, *fields: str) -> dict[dt.datetime, tuple[int, ...]]:
        parts = parts_of(hourly_rows, daily_rows)
        return per_bucket([part.annotate(bucket=bucket_of(when)) for part, when in parts], *fields)

    visits = rollup(
        _visit_rows(VisitHourly, path=path),
        _visit_rows(VisitDaily, path=path),
        "pageviews",
        "visits",
    )
    if path:
        pages = rollup(
            _page_rows(PageHourly, path=path), _page_rows(PageDaily, path=path), "pageviews"
        )
        pageviews = {moment: totals[0] for moment, totals in pages.items()}
        truncate = TruncHour if hourly else TruncDay
        visitors = dict(
            _filtered_visits(start=start, end=end, path=path)
            .annotate(bucket=truncate("started_at", tzinfo=zone))
            .values("bucket")
            .annotate(visitors=Count("tracking_id", distinct=True))
            .values_list("bucket", "visitors")
        )
    else:
        pageviews = {moment: totals[0] for moment, totals in visits.items()}
        repeats = per_bucket(
            [
                # Same bucket, compared as the database truncates both (not against the
                # bucket's start: SQLite's and PostgreSQL's local truncations carry no zone).
                part.annotate(
                    bucket=bucket_of(when), previous_bucket=bucket_of("previous_hour")
                ).filter(previous_bucket=F("bucket"))
                # previous_hour >= start too: the range's first day may begin after midnight.
                for part, when in parts_of(
                    VisitorHourly.objects.filter(lag=1, previous_hour__gte=start),
                    VisitorDaily.objects.filter(lag=1, previous_hour__gte=start),
                )
            ],
            "visits",
        )
        visitors = {
            moment: totals[1] - repeats.get(moment, (0,))[0] for moment, totals in visits.items()
        }
    return [
        {
            "t": moment,
            "pageviews": pageviews.get(moment, 0),
            "visits": visits.get(moment, (0, 0))[1],
            "visitors": visitors.get(moment, 0),
        }
        for moment in buckets
    ]


def dimension_breakdown(
    *,
    start: dt.datetime,
    end: dt.datetime,
    dimensions: list[str],
    limit: int,
    path: str | None = None,
) -> dict[str, list[dict]]:
    """The top values of several visit dimensions in one query (a window ranks each one).

    With a path filter only the entry page can be narrowed (rollups hold one dimension at a time).
    """
    hourly = VisitHourly.objects.filter(dimension__in=dimensions)
    daily = VisitDaily.objects.filter(dimension__in=dimensions)
    if path:
        other_entry = Q(dimension=Dimension.ENTRY_PATH) & ~Q(value=path)
        hourly, daily = hourly.exclude(other_entry), daily.exclude(other_entry)
    measures = VISIT_MEASURES
    rows, params = _rollup_rows(
        hourly, daily, start=start, end=end, fields=["dimension", "value", *measures]
    )
    sql = f"""SELECT dimension, value, {", ".join(f"total_{m}" for m in measures)} FROM (
            SELECT dimension, value, {", ".join(f"sum({m}) AS total_{m}" for m in measures)},
                row_number() OVER (PARTITION BY dimension ORDER BY sum(visits) DESC, value)
                    AS position
            FROM ({rows}) rollup GROUP BY dimension, value
        ) ranked WHERE position <= %s ORDER BY dimension, position"""  # noqa: S608
    breakdown: dict[str, list[dict]] = {dimension: [] for dimension in dimensions}
    for dimension, value, visits, pageviews, bounces, duration, returning in _fetch(
        sql, [*params, limit]
    ):
        breakdown[dimension].append(
            {
                "value": value,
                "visits": visits,
                "pageviews": pageviews,
                "returning_visits": returning,
                "bounce_rate": bounces / visits if visits else None,
                # int(): PostgreSQL sums the bigint duration as numeric (a Decimal here).
                "avg_visit_seconds": int(duration) / visits if visits else None,
            }
        )
    return breakdown


def top_countries(
    *, start: dt.datetime, end: dt.datetime, limit: int, breakdown: list[dict] | None = None
) -> list[dict]:
    """Countries by visits, with their distinct visitors over the whole range (exact).

    A country's visitors are its visits less those whose visitor's previous visit from it also
    started in the range (CountryVisitorCounts). ``breakdown``: this range's country rows from
    ``dimension_breakdown``, when already read.
    """
    if breakdown is None:
        breakdown = dimension_breakdown(
            start=start, end=end, dimensions=[Dimension.COUNTRY], limit=limit
        )[Dimension.COUNTRY]
    if not breakdown:
        return []
    repeats = earlier_hour_sums(
        CountryVisitorHourly,
        CountryVisitorDaily,
        key="country",
        measure="visitors",
        start=start,
        end=end,
        keys=[row["value"] for row in breakdown],
    )
    return [
        {
            "country": row["value"],
            "visitors": row["visits"] - repeats.get(row["value"], 0),
            **{key: row[key] for key in ("visits", "pageviews", "bounce_rate")},
        }
        for row in breakdown
    ]


VISITOR_FIELDS = [
    "tracking_id",
    "first_seen",
    "last_seen",
    "visits",
    "pageviews",
    "entry_path",
    *SOURCE_FIELDS,
    *DEVICE_FIELDS,
    "country",
    "ended",
]
VISIT_FIELDS = [
    "tracking_id",
    "number",
    "started_at",
    "ended_at",
    "pageviews",
    "duration_seconds",
    "entry_path",
    "exit_path",
    *SOURCE_FIELDS,
    *DEVICE_FIELDS,
    "country",
]


def _new_visitors_in(*, start: dt.datetime, end: dt.datetime, path: str | None) -> QuerySet:
    """Visitors whose first visit started in the range (entered on ``path``)."""
    rows = TrackedSession.objects.filter(first_seen__gte=start, first_seen__lt=end)
    return rows.filter(entry_path=path) if path else rows


def new_visitor_count(*, start: dt.datetime, end: dt.datetime, path: str | None = None) -> int:
    """Visitors first seen in [start, end): the range's first visits, from the rollups."""
    sums = _range_sums(
        _visit_rows(VisitHourly, path=path),
        _visit_rows(VisitDaily, path=path),
        start=start,
        end=end,
        fields=["visits", "returning_visits"],
    )
    return sums["visits"] - sums["returning_visits"]


BUCKET_LOWEST = {"1": 1, "2": 2, "3": 3, "4-5": 4, "6-10": 6, "11-20": 11, "21+": 21}


def _busiest_threshold(histogram: list[dict], limit: int) -> int:
    """The fewest pageviews a visit of the top ``limit`` can have, read from the histogram.

    It lets the database skip the many short visits instead of sorting every visit started in
    the range.
    """
    counted = 0
    for row in reversed(histogram):
        counted += row["visits"]
        if counted >= limit:
            return BUCKET_LOWEST[row["bucket"]]
    return 1


def busiest_visits(
    *,
    start: dt.datetime,
    end: dt.datetime,
    limit: int,
    path: str | None = None,
    histogram: list[dict] | None = None,
) -> list[dict]:
    """The visits with the most pageviews among those started in the range.

    ``histogram`` (this range's pages_per_visit_histogram, site-wide) bounds the search when
    there is no path filter.
    """
    rows = _filtered_visits(start=start, end=end, path=path)
    if histogram is not None and not path:
        rows = rows.filter(pageviews__gte=_busiest_threshold(histogram, limit))
    rows = rows.order_by("-pageviews", "-duration_seconds", "tracking_id", "number")
    return list(rows.values(*VISIT_FIELDS)[:limit])


def visitors_page(
    *,
    start: dt.datetime,
    end: dt.datetime,
    page: int,
    per_page: int,
    path: str | None = None,
) -> list[dict]:
    """One page of the visitors first seen in the range, newest first."""
    offset = (page - 1) * per_page
    rows = _new_visitors_in(start=start, end=end, path=path).order_by("-first_seen", "tracking_id")
    return list(rows.values(*VISITOR_FIELDS)[offset : offset + per_page])


def visits_for_export(*, start: dt.datetime, end: dt.datetime, path: str | None = None):
    """Every visit started in the range, oldest first, streamed from the database in chunks."""
    rows = _filtered_visits(start=start, end=end, path=path).order_by(
        "started_at", "tracking_id", "number"
    )
    return rows.values_list(*VISIT_FIELDS).iterator(chunk_size=2000)


def live_visitors(*, now: dt.datetime) -> int:
    """Visitors with a page view in the last five minutes: the one read of raw page views."""
    return Visit.objects.filter(visited_at__gte=now - LIVE_WINDOW, visited_at__lte=now).aggregate(
        visitors=Count("tracking_id", distinct=True)
    )["visitors"]


@dataclass(frozen=True)
class TimelineStep:
    visited_at: dt.datetime
    path: str
    status_code: int
    seconds_on_page: float | None  # the gap to the next page view of its visit; None if last


@dataclass(frozen=True)
class TimelineVisit:
    summary: dict | None  # the VisitSummary row; None for page views not aggregated yet
    steps: list[TimelineStep]


@dataclass(frozen=True)
class Timeline:
    tracking_id: uuid.UUID
    summary: dict | None
    visits: list[TimelineVisit]

    @property
    def pruned(self) -> bool:
        """The summary outlived its raw page views (pruned after the retention period)."""
        return self.summary is not None and not any(visit.steps for visit in self.visits)


def _steps(rows: list[tuple]) -> list[TimelineStep]:
    steps = []
    for index, (_, visited_at, path, status_code) in enumerate(rows):
        following = rows[index + 1][1] if index + 1 < len(rows) else None
        seconds = (following - visited_at).total_seconds() if following else None
        steps.append(TimelineStep(visited_at, path, status_code, seconds))
    return steps


def session_timeline(*, tracking_id: uuid.UUID) -> Timeline | None:
    """One visitor's page views grouped by visit, newest visit last; None if it is unknown.

    Each visit takes the page views from its first one (``first_pageview_id``) up to the next
    visit's first; page views after the last aggregated visit form a visit without a summary.
    """
    summary = TrackedSession.objects.filter(tracking_id=tracking_id).values(*VISITOR_FIELDS).first()
    visits = list(
        VisitSummary.objects.filter(tracking_id=tracking_id)
        .order_by("number")
        .values(*VISIT_FIELDS, "first_pageview_id")
    )
    rows = list(
        Visit.objects.filter(tracking_id=tracking_id)
        .order_by("visited_at", "id")
        .values_list("id", "visited_at", "path", "status_code")
    )
    if summary is None and not rows:
        return None
    watermark = visits_watermark()
    starts = [(visit["started_at"], visit["first_pageview_id"]) for visit in visits]
    grouped: list[list[tuple]] = [[] for _ in visits]
    unaggregated: list[tuple] = []
    for row in rows:
        position = bisect_right(starts, (row[1], row[0])) - 1
        if row[0] > watermark or position < 0:
            unaggregated.append(row)
        else:
            grouped[position].append(row)
    timeline_visits = [
        TimelineVisit(summary=visit, steps=_steps(group))
        for visit, group in zip(visits, grouped, strict=True)
    ]
    if unaggregated:
        timeline_visits.append(TimelineVisit(summary=None, steps=_steps(unaggregated)))
    return Timeline(tracking_id=tracking_id, summary=summary, visits=timeline_visits)


def stats_from_rollups(*, start: dt.datetime, end: dt.datetime, path: str | None = None) -> dict:
    """The figures of stats.json (PRODUCT.md names them) except "live": JSON-ready values."""
    repeats = repeat_visits(start=start, end=end)
    headline = headline_totals(start=start, end=end, path=path, repeats=repeats)
    current = headline["current"]
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "path": path or None,
        "visitors": current["visitors"],
        "sessions": current["visitors"],  # the name before visits existed: an alias
        "visits": current["visits"],
        "pageviews": current["pageviews"],
        "views_per_visit": current["views_per_visit"],
        "bounce_rate": current["bounce_rate"],
        "avg_visit_seconds": current["avg_visit_seconds"],
        "returning_visits": current["returning_visits"],
        "returning_share": current["returning_share"],
        "previous": headline["previous"],
        "change": headline["change"],
        "top_pages": top_pages(start=start, end=end, limit=10, path=path),
        "visits_per_visitor_histogram": visits_per_visitor_histogram(
            start=start, end=end, visits=None if path else current["visits"], repeats=repeats
        ),
        "pages_per_visit_histogram": pages_per_visit_histogram(start=start, end=end),
        "countries": top_countries(start=start, end=end, limit=COUNTRIES_LIMIT),
        "timeseries": [
            {**point, "t": point["t"].isoformat()}
            for point in timeseries(start=start, end=end, path=path)
        ],
    }


def stats(
    *, start: dt.datetime, end: dt.datetime, now: dt.datetime, path: str | None = None
) -> dict:
    """Every figure of stats.json, "live_sessions" (raw page views of the last minutes) included."""
    figures = stats_from_rollups(start=start, end=end, path=path)
    return {**figures, "live_sessions": live_visitors(now=now)}
