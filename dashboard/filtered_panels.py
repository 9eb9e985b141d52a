"""The dashboard's parts under filters: the same context names as panels.PARTS, read from the
per-visit table (filtered_queries) instead of the rollups.

The parts of one request share one visit_overview (``memo``): the filters are evaluated once for
the cards, histograms, breakdowns, countries and the visitors table's count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.conf import settings

from dashboard import filtered_queries, goal_queries
from dashboard.filters import Filters, filters_pairs, visits_filtered
from dashboard.forms import Period
from dashboard.funnels import funnel_panel
from dashboard.panels import (
    BREAKDOWN_LIMIT,
    BUSIEST_LIMIT,
    PART_DIMENSIONS,
    SESSIONS_PER_PAGE,
    over_time_context,
    rollups_version,
    visitors_table,
    visits_context,
)


def _overview(*, period: Period, filters: Filters, memo: dict) -> dict:
    if "overview" not in memo:
        memo["overview"] = filtered_queries.visit_overview(
            filters=filters, start=period.start, end=period.end, limit=BREAKDOWN_LIMIT
        )
    return memo["overview"]


def _headline(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
    headline = filtered_queries.headline_filtered(
        filters=filters,
        start=period.start,
        end=period.end,
        overview=_overview(period=period, filters=filters, memo=memo),
    )
    return {"headline": headline}


def _visits(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
    span = {"filters": filters, "start": period.start, "end": period.end}
    overview = _overview(period=period, filters=filters, memo=memo)
    histogram = filtered_queries.overview_pages_histogram(overview)
    visitors_histogram = filtered_queries.overview_visitors_histogram(overview)
    busiest = filtered_queries.busiest_filtered(**span, limit=BUSIEST_LIMIT)
    return visits_context(histogram, visitors_histogram, busiest)


def _over_time(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
    points = filtered_queries.timeseries_filtered(
        filters=filters, start=period.start, end=period.end
    )
    previous = filtered_queries.timeseries_filtered(
        filters=filters, start=period.previous.start, end=period.previous.end
    )
    return over_time_context(points, previous, hourly=period.hourly)


def _breakdown(part: str) -> Callable[..., dict]:
    def build(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
        rows = filtered_queries.overview_breakdowns(
            _overview(period=period, filters=filters, memo=memo), PART_DIMENSIONS[part]
        )
        return {f"breakdown_{dimension}": values for dimension, values in rows.items()}

    return build


def _pages(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
    return {
        "top_pages": filtered_queries.top_pages_filtered(
            filters=filters, start=period.start, end=period.end, limit=BREAKDOWN_LIMIT
        ),
        **_breakdown("pages")(period=period, filters=filters, page=page, memo=memo),
    }


def _countries(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
    overview = _overview(period=period, filters=filters, memo=memo)
    return {"countries": filtered_queries.overview_countries(overview)}


def _sessions(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
    span = {"filters": filters, "start": period.start, "end": period.end}
    # Alone (a page of the table, or the cached rest of the page) a count is cheaper than the
    # overview; with the other parts it is read already.
    total = (
        memo["overview"]["first"]["visits"]
        if "overview" in memo
        else filtered_queries.new_visitor_count_filtered(**span)
    )
    return visitors_table(
        total=total,
        page=page,
        rows=lambda page: filtered_queries.visitors_page_filtered(
            **span, page=page, per_page=SESSIONS_PER_PAGE
        ),
    )


def _events(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
    events = filtered_queries.events_filtered(filters=filters, start=period.start, end=period.end)
    return {"events": events}


def _goals(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
    visits = visits_filtered(filters=filters, start=period.start, end=period.end)
    return {
        "goals": goal_queries.goal_totals(start=period.start, end=period.end, visits=visits),
        "goals_loaded": True,
        "currency": settings.TRACKER_CURRENCY,
    }


def _funnels(*, period: Period, filters: Filters, page: int, memo: dict) -> dict:
    panel = funnel_panel(
        start=period.start,
        end=period.end,
        version=rollups_version,
        visits=visits_filtered(filters=filters, start=period.start, end=period.end),
        filters_key=repr(filters_pairs(filters)),
    )
    return {"funnels": panel, "funnels_loaded": True}


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
    "goals": _goals,
    "funnels": _funnels,
}


def filtered_part(
    part: str, *, period: Period, filters: Filters, page: int, now: dt.datetime, memo: dict
) -> dict | None:
    """One part's context under filters; None for the parts filters do not change ("live")."""
    build = FILTERED_PARTS.get(part)
    return build(period=period, filters=filters, page=page, memo=memo) if build else None
