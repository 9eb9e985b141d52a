"""The dashboard's parts under filters: the same context names as panels.PARTS, read from the
per-visit table (filtered_queries) instead of the rollups."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from dashboard import charts, filtered_queries
from dashboard.filters import Filters
from dashboard.forms import Period
from dashboard.panels import (
    BREAKDOWN_LIMIT,
    BUSIEST_LIMIT,
    PART_DIMENSIONS,
    SESSIONS_PER_PAGE,
)


def _headline(*, period: Period, filters: Filters, page: int) -> dict:
    headline = filtered_queries.headline_filtered(
        filters=filters, start=period.start, end=period.end
    )
    return {"headline": headline}


def _visits(*, period: Period, filters: Filters, page: int) -> dict:
    span = {"filters": filters, "start": period.start, "end": period.end}
    histogram = filtered_queries.pages_per_visit_filtered(**span)
    visitors_histogram = filtered_queries.visits_per_visitor_filtered(**span)
    busiest = filtered_queries.busiest_filtered(**span, limit=BUSIEST_LIMIT)
    return {
        "histogram": histogram,
        "histogram_figure": charts.pages_per_visit_figure(histogram),
        "visitors_histogram": visitors_histogram,
        "visitors_histogram_figure": charts.visits_per_visitor_figure(visitors_histogram),
        "busiest": busiest,
        "busiest_figure": charts.busiest_visits_figure(busiest) if busiest else None,
    }


def _over_time(*, period: Period, filters: Filters, page: int) -> dict:
    points = filtered_queries.timeseries_filtered(
        filters=filters, start=period.start, end=period.end
    )
    return {
        "timeseries": points,
        "timeseries_hourly": period.hourly,
        "timeseries_figure": charts.timeseries_figure(points, hourly=period.hourly),
    }


def _breakdown(part: str) -> Callable[..., dict]:
    def build(*, period: Period, filters: Filters, page: int) -> dict:
        rows = filtered_queries.breakdown_filtered(
            filters=filters,
            start=period.start,
            end=period.end,
            dimensions=PART_DIMENSIONS[part],
            limit=BREAKDOWN_LIMIT,
        )
        return {f"breakdown_{dimension}": values for dimension, values in rows.items()}

    return build


def _pages(*, period: Period, filters: Filters, page: int) -> dict:
    return {
        "top_pages": filtered_queries.top_pages_filtered(
            filters=filters, start=period.start, end=period.end, limit=BREAKDOWN_LIMIT
        ),
        **_breakdown("pages")(period=period, filters=filters, page=page),
    }


def _countries(*, period: Period, filters: Filters, page: int) -> dict:
    countries = filtered_queries.countries_filtered(
        filters=filters, start=period.start, end=period.end, limit=BREAKDOWN_LIMIT
    )
    return {"countries": countries}


def _sessions(*, period: Period, filters: Filters, page: int) -> dict:
    span = {"filters": filters, "start": period.start, "end": period.end}
    total = filtered_queries.new_visitor_count_filtered(**span)
    page_count = max(1, -(-total // SESSIONS_PER_PAGE))
    page = min(page, page_count)
    sessions = filtered_queries.visitors_page_filtered(
        **span, page=page, per_page=SESSIONS_PER_PAGE
    )
    first = (page - 1) * SESSIONS_PER_PAGE + 1
    return {
        "sessions": sessions,
        "sessions_last": first + len(sessions) - 1,
        "sessions_total": total,
        "sessions_page": page,
        "sessions_page_count": page_count,
        "sessions_first": first,
    }


def _events(*, period: Period, filters: Filters, page: int) -> dict:
    events = filtered_queries.events_filtered(filters=filters, start=period.start, end=period.end)
    return {"events": events}


FILTERED_PARTS: dict[str, Callable[..., dict]] = {
    "headline": _headline,
    "visits": _visits,
    "over-time": _over_time,
    "pages": _pages,
    "sources": _breakdown("sources"),
    "tech": _breakdown("tech"),
    "countries": _countries,
    "sessions": _sessions,
    "events": _events,
}


def filtered_part(
    part: str, *, period: Period, filters: Filters, page: int, now: dt.datetime
) -> dict | None:
    """One part's context under filters; None for the parts filters do not change ("live")."""
    build = FILTERED_PARTS.get(part)
    return build(period=period, filters=filters, page=page) if build else None
