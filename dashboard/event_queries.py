# ruff: noqa: S608 - only table and column names are interpolated; values are parameters.
"""Read functions for events: the events panel, stats.json's ``events``, events.csv, the
events of a visitor's timeline and the visitors table's counters.

Per-name figures come from the event rollups (their cost follows the range, not the raw
table); one event's props, a visitor's timeline and the visitors table's counters read raw
events, which are kept for the raw retention period like raw page views.
"""

from __future__ import annotations

import datetime as dt
import uuid
from bisect import bisect_right

from django.db import connection
from django.db.models import Count

from dashboard.queries import Timeline, _fetch, _rollup_rows, earlier_hour_sums
from tracker.models import Event, EventDaily, EventHourly, EventVisitorDaily, EventVisitorHourly

EVENT_COLUMNS = ["name", "visitors", "count"]
PROP_VALUES_LIMIT = 50


def _event_repeats(*, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    """Per name: its hourly visitors in [start, end) who had it in an earlier hour of it."""
    return earlier_hour_sums(
        EventVisitorHourly, EventVisitorDaily, key="name", measure="visitors", start=start, end=end
    )


def event_totals(*, start: dt.datetime, end: dt.datetime, limit: int | None = None) -> list[dict]:
    """Event names of [start, end) by distinct visitors (exact), with their occurrences.

    A name's visitors are the sum of its hourly distinct visitors less those who had it in an
    earlier hour of the range (EventVisitorCounts), as top pages' visitors.
    """
    rows, params = _rollup_rows(
        EventHourly.objects.all(),
        EventDaily.objects.all(),
        start=start,
        end=end,
        fields=["name", "occurrences", "visitors"],
    )
    sql = f"""SELECT name, sum(occurrences), sum(visitors) FROM ({rows}) rollup GROUP BY name"""
    counts = _fetch(sql, params)
    repeats = _event_repeats(start=start, end=end) if counts else {}
    events = [
        {"name": name, "visitors": int(hourly) - repeats.get(name, 0), "count": int(occurrences)}
        for name, occurrences, hourly in counts
    ]
    events.sort(key=lambda event: (-event["visitors"], -event["count"], event["name"]))
    return events[:limit] if limit else events


def event_prop_values(
    *, name: str, start: dt.datetime, end: dt.datetime, limit: int = PROP_VALUES_LIMIT
) -> list[dict]:
    """The props' values of one event name in [start, end): key, value, count and distinct
    visitors, most frequent first, read from the raw events (within the raw retention)."""
    table = Event._meta.db_table
    if connection.vendor == "postgresql":
        pairs = f"{table} e CROSS JOIN LATERAL jsonb_each_text(e.props) AS p(key, value)"
    else:
        pairs = f"{table} e, json_each(e.props) p"
    sql = f"""SELECT p.key, p.value, count(*) AS occurrences,
            count(DISTINCT e.tracking_id) AS visitors
        FROM {pairs}
        WHERE e.name = %s AND e.occurred_at >= %s AND e.occurred_at < %s
        GROUP BY p.key, p.value
        ORDER BY occurrences DESC, p.key, p.value
        LIMIT %s"""
    adapt = connection.ops.adapt_datetimefield_value
    rows = _fetch(sql, [name, adapt(start), adapt(end), limit])
    return [
        {"key": key, "value": str(value), "count": int(count), "visitors": int(visitors)}
        for key, value, count, visitors in rows
    ]


def timeline_events(*, timeline: Timeline) -> list[list[dict]]:
    """A visitor's raw events, one list per visit of the timeline (in its order): each event
    goes to the last visit started at or before it (the first visit for any before it)."""
    events = list(
        Event.objects.filter(tracking_id=timeline.tracking_id)
        .order_by("occurred_at", "id")
        .values("occurred_at", "name", "path", "props", "revenue")
    )
    earliest = dt.datetime.min.replace(tzinfo=dt.UTC)
    starts: list[dt.datetime] = []
    for visit in timeline.visits:
        if visit.summary is not None:
            start = visit.summary["started_at"]
        else:  # page views not aggregated yet: after the visits that are
            start = visit.steps[0].visited_at if visit.steps else earliest
        starts.append(max(start, starts[-1]) if starts else start)
    grouped: list[list[dict]] = [[] for _ in timeline.visits]
    if not grouped:
        return grouped
    for event in events:
        position = max(bisect_right(starts, event["occurred_at"]) - 1, 0)
        grouped[position].append(event)
    return grouped


def visitor_event_counts(*, tracking_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict]]:
    """Each listed visitor's events by name (most frequent first), from the raw events still
    stored: the visitors table's per-session counters, in one query for the page."""
    rows = (
        Event.objects.filter(tracking_id__in=tracking_ids)
        .values("tracking_id", "name")
        .annotate(count=Count("id"))
        .order_by("tracking_id", "-count", "name")
    )
    counters: dict[uuid.UUID, list[dict]] = {}
    for row in rows:
        counters.setdefault(row["tracking_id"], []).append(
            {"name": row["name"], "count": row["count"]}
        )
    return counters
