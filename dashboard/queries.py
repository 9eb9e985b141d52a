"""Read functions behind the dashboard: rollups for every range, raw visits only for "live".

A session belongs to a range by the hour it started. Figures of any range come from the rollups
(whole UTC days from PageDaily and SessionDaily, the hours at a range's edges from PageHourly and
SessionHourly) and TrackedSession (through its (first_seen, pageviews) index), so their cost grows
with the number of days (or hours), paths and sessions shown, never with the raw visit table.

Pageviews follow their session: without a filter they are the pageviews of the sessions started
in the range (so pages per session is exactly pageviews / sessions, and one daily row per day
answers every headline figure). With a path filter, page-level figures (pageviews, the time
series' pageviews, top pages) are the views of that path in the range by visit time, and
session-level figures are those of the sessions that entered on it. Top pages always count
views by visit time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from tracker.models import (
    SESSION_MEASURES,
    PageDaily,
    PageHourly,
    SessionDaily,
    SessionHourly,
    TrackedSession,
    Visit,
)

Dimension = SessionHourly.Dimension
PAGES_BUCKETS = ["1", "2", "3", "4-5", "6-10", "11-20", "21+"]
LIVE_WINDOW = dt.timedelta(minutes=5)
HOURLY_UP_TO = dt.timedelta(days=2)


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


def _session_rows(model: type[SessionHourly | SessionDaily], *, path: str | None) -> QuerySet:
    """Session rollup rows for all sessions, or for the sessions that entered on ``path``."""
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


def _ratios(*, sessions: int, session_pageviews: int, bounces: int, duration: int) -> dict:
    return {
        "pages_per_session": round(session_pageviews / sessions, 2) if sessions else None,
        "bounce_rate": round(bounces / sessions, 4) if sessions else None,
        "avg_session_seconds": round(duration / sessions, 1) if sessions else None,
    }


def headline_totals(
    *, start: dt.datetime, end: dt.datetime, path: str | None = None
) -> dict[str, dict]:
    """The headline figures of [start, end) and of the period of the same length before it.

    One query (two with a path filter) summing both periods at once.
    """
    session_sums = _period_sums(
        _session_rows(SessionHourly, path=path),
        _session_rows(SessionDaily, path=path),
        start=start,
        end=end,
        fields=SESSION_MEASURES,
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
        page_sums = session_sums  # pageviews follow their session (see the top)
    periods = {}
    for name, sessions, pages in zip(("current", "previous"), session_sums, page_sums, strict=True):
        periods[name] = {
            "sessions": sessions["sessions"],
            "pageviews": pages["pageviews"],
            **_ratios(
                sessions=sessions["sessions"],
                session_pageviews=sessions["pageviews"],
                bounces=sessions["bounces"],
                duration=sessions["duration_seconds"],
            ),
        }
    periods["change"] = {
        key: _change(periods["current"][key], periods["previous"][key])
        for key in periods["current"]
    }
    return periods


def session_count(*, start: dt.datetime, end: dt.datetime, path: str | None = None) -> int:
    """Sessions started in [start, end) (entered on ``path``), counted from the rollups."""
    rows, params = _rollup_rows(
        _session_rows(SessionHourly, path=path),
        _session_rows(SessionDaily, path=path),
        start=start,
        end=end,
        fields=["sessions"],
    )
    sql = f"SELECT coalesce(sum(sessions), 0) FROM ({rows}) rollup"  # noqa: S608
    return int(_fetch(sql, params)[0][0])  # a numeric sum on PostgreSQL


def top_pages(
    *, start: dt.datetime, end: dt.datetime, limit: int | None, path: str | None = None
) -> list[dict]:
    """Paths by pageviews; ``sessions`` adds up each hour's distinct sessions of the path."""
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
    return [
        {"path": path, "pageviews": pageviews, "sessions": sessions}
        for path, pageviews, sessions in _fetch(sql, params)
    ]


def pages_per_session_histogram(*, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """Sessions started in the range by their number of pageviews, every bucket present."""
    rows, params = _rollup_rows(
        SessionHourly.objects.filter(dimension=Dimension.PAGES),
        SessionDaily.objects.filter(dimension=Dimension.PAGES),
        start=start,
        end=end,
        fields=["value", "sessions"],
    )
    sql = f"SELECT value, sum(sessions) FROM ({rows}) rollup GROUP BY value"  # noqa: S608
    counts = dict(_fetch(sql, params))
    return [{"bucket": bucket, "sessions": counts.get(bucket, 0)} for bucket in PAGES_BUCKETS]


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
    """Pageviews and sessions per hour up to two days, else per local day (see the top).

    Where local days are UTC days, whole days come from the daily rollups; elsewhere a local day
    straddles two rows of them, so its hours are summed.
    """
    hourly = end - start <= HOURLY_UP_TO
    buckets = _buckets(start=start, end=end, hourly=hourly)
    whole_days = not hourly and _days_are_utc_days(buckets)
    zone = timezone.get_current_timezone()

    def per_bucket(hourly_rows, daily_rows, *fields: str) -> dict[dt.datetime, tuple[int, ...]]:
        if whole_days:
            parts = _rollup_parts(hourly_rows, daily_rows, start=start, end=end)
        else:
            parts = [(hourly_rows.filter(hour__gte=start, hour__lt=end), "hour")]
        grouped = [
            part.annotate(bucket=F(when) if hourly else TruncDay(when, tzinfo=zone))
            .values("bucket")
            .annotate(**{f"total_{field}": Sum(field) for field in fields})
            .values_list("bucket", *(f"total_{field}" for field in fields))
            for part, when in parts
        ]
        # The edge hours lie in the range's partial days, never in a whole day read from the
        # daily rollup: each bucket comes from one part only.
        rows = grouped[0].union(*grouped[1:], all=True) if len(grouped) > 1 else grouped[0]
        return {moment: totals for moment, *totals in rows}

    if path:
        pages = per_bucket(
            _page_rows(PageHourly, path=path), _page_rows(PageDaily, path=path), "pageviews"
        )
        entries = per_bucket(
            _session_rows(SessionHourly, path=path),
            _session_rows(SessionDaily, path=path),
            "sessions",
        )
        pageviews = {moment: totals[0] for moment, totals in pages.items()}
        sessions = {moment: totals[0] for moment, totals in entries.items()}
    else:
        both = per_bucket(
            _session_rows(SessionHourly, path=None),
            _session_rows(SessionDaily, path=None),
            "pageviews",
            "sessions",
        )
        pageviews = {moment: totals[0] for moment, totals in both.items()}
        sessions = {moment: totals[1] for moment, totals in both.items()}
    return [
        {"t": moment, "pageviews": pageviews.get(moment, 0), "sessions": sessions.get(moment, 0)}
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
    """The top values of several session dimensions in one query (a window ranks each one).

    With a path filter only the entry page can be narrowed (rollups hold one dimension at a time).
    """
    hourly = SessionHourly.objects.filter(dimension__in=dimensions)
    daily = SessionDaily.objects.filter(dimension__in=dimensions)
    if path:
        other_entry = Q(dimension=Dimension.ENTRY_PATH) & ~Q(value=path)
        hourly, daily = hourly.exclude(other_entry), daily.exclude(other_entry)
    measures = SESSION_MEASURES
    rows, params = _rollup_rows(
        hourly, daily, start=start, end=end, fields=["dimension", "value", *measures]
    )
    sql = f"""SELECT dimension, value, {", ".join(f"total_{m}" for m in measures)} FROM (
            SELECT dimension, value, {", ".join(f"sum({m}) AS total_{m}" for m in measures)},
                row_number() OVER (PARTITION BY dimension ORDER BY sum(sessions) DESC, value)
                    AS position
            FROM ({rows}) rollup GROUP BY dimension, value
        ) ranked WHERE position <= %s ORDER BY dimension, position"""  # noqa: S608
    breakdown: dict[str, list[dict]] = {dimension: [] for dimension in dimensions}
    for dimension, value, sessions, pageviews, bounces, duration in _fetch(sql, [*params, limit]):
        breakdown[dimension].append(
            {
                "value": value,
                "sessions": sessions,
                "pageviews": pageviews,
                "bounce_rate": bounces / sessions if sessions else None,
                "avg_session_seconds": duration / sessions if sessions else None,
            }
        )
    return breakdown


SESSION_FIELDS = [
    "tracking_id",
    "first_seen",
    "last_seen",
    "pageviews",
    "duration_seconds",
    "entry_path",
    "exit_path",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "browser",
    "os",
    "device",
    "ended",
]


def _sessions_in(*, start: dt.datetime, end: dt.datetime, path: str | None):
    rows = TrackedSession.objects.filter(first_seen__gte=start, first_seen__lt=end)
    return rows.filter(entry_path=path) if path else rows


BUCKET_LOWEST = {"1": 1, "2": 2, "3": 3, "4-5": 4, "6-10": 6, "11-20": 11, "21+": 21}


def _busiest_threshold(histogram: list[dict], limit: int) -> int:
    """The fewest pageviews a session of the top ``limit`` can have, read from the histogram.

    It lets the database skip the many short sessions instead of sorting every session started
    in the range.
    """
    counted = 0
    for row in reversed(histogram):
        counted += row["sessions"]
        if counted >= limit:
            return BUCKET_LOWEST[row["bucket"]]
    return 1


def busiest_sessions(
    *,
    start: dt.datetime,
    end: dt.datetime,
    limit: int,
    path: str | None = None,
    histogram: list[dict] | None = None,
) -> list[dict]:
    """The sessions with the most pageviews among those started in the range.

    ``histogram`` (this range's pages_per_session_histogram, site-wide) bounds the search when
    there is no path filter.
    """
    rows = _sessions_in(start=start, end=end, path=path)
    if histogram is not None and not path:
        rows = rows.filter(pageviews__gte=_busiest_threshold(histogram, limit))
    rows = rows.order_by("-pageviews", "-duration_seconds", "tracking_id")
    return list(rows.values(*SESSION_FIELDS)[:limit])


def sessions_page(
    *,
    start: dt.datetime,
    end: dt.datetime,
    page: int,
    per_page: int,
    path: str | None = None,
) -> list[dict]:
    """One page of the range's sessions, newest first; the total comes from the rollups."""
    offset = (page - 1) * per_page
    rows = _sessions_in(start=start, end=end, path=path).order_by("-first_seen", "tracking_id")
    return list(rows.values(*SESSION_FIELDS)[offset : offset + per_page])


def sessions_for_export(*, start: dt.datetime, end: dt.datetime, path: str | None = None):
    """Every session of the range, oldest first, streamed from the database in chunks."""
    rows = _sessions_in(start=start, end=end, path=path).order_by("first_seen", "tracking_id")
    return rows.values_list(*SESSION_FIELDS).iterator(chunk_size=2000)


def live_sessions(*, now: dt.datetime) -> int:
    """Sessions with a page view in the last five minutes: the one read of raw visits."""
    return Visit.objects.filter(visited_at__gte=now - LIVE_WINDOW, visited_at__lte=now).aggregate(
        sessions=Count("tracking_id", distinct=True)
    )["sessions"]


@dataclass(frozen=True)
class TimelineStep:
    visited_at: dt.datetime
    path: str
    status_code: int
    seconds_on_page: float | None  # the gap to the next visit; unknown for the last one


@dataclass(frozen=True)
class Timeline:
    tracking_id: uuid.UUID
    summary: dict | None
    steps: list[TimelineStep]

    @property
    def pruned(self) -> bool:
        """The summary outlived its raw visits (pruned after the retention period)."""
        return self.summary is not None and not self.steps


def session_timeline(*, tracking_id: uuid.UUID) -> Timeline | None:
    """One session's pages in order with the time spent on each; None if it is unknown."""
    summary = TrackedSession.objects.filter(tracking_id=tracking_id).values(*SESSION_FIELDS).first()
    visits = list(
        Visit.objects.filter(tracking_id=tracking_id)
        .order_by("visited_at", "id")
        .values_list("visited_at", "path", "status_code")
    )
    if summary is None and not visits:
        return None
    steps = []
    for index, (visited_at, path, status_code) in enumerate(visits):
        following = visits[index + 1][0] if index + 1 < len(visits) else None
        seconds = (following - visited_at).total_seconds() if following else None
        steps.append(TimelineStep(visited_at, path, status_code, seconds))
    return Timeline(tracking_id=tracking_id, summary=summary, steps=steps)


def stats_from_rollups(*, start: dt.datetime, end: dt.datetime, path: str | None = None) -> dict:
    """The figures of stats.json (PRODUCT.md names them) except "live": JSON-ready values."""
    headline = headline_totals(start=start, end=end, path=path)
    current = headline["current"]
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "path": path or None,
        "sessions": current["sessions"],
        "pageviews": current["pageviews"],
        "pages_per_session": current["pages_per_session"],
        "bounce_rate": current["bounce_rate"],
        "avg_session_seconds": current["avg_session_seconds"],
        "previous": headline["previous"],
        "change": headline["change"],
        "top_pages": top_pages(start=start, end=end, limit=10, path=path),
        "pages_per_session_histogram": pages_per_session_histogram(start=start, end=end),
        "timeseries": [
            {**point, "t": point["t"].isoformat()}
            for point in timeseries(start=start, end=end, path=path)
        ],
    }


def stats(
    *, start: dt.datetime, end: dt.datetime, now: dt.datetime, path: str | None = None
) -> dict:
    """Every figure of stats.json, "live_sessions" (raw visits of the last minutes) included."""
    figures = stats_from_rollups(start=start, end=end, path=path)
    return {**figures, "live_sessions": live_sessions(now=now)}
