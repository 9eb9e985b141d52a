"""The dashboard's parts under filters: the same context names as panels.PARTS, read from the
per-visit table (filtered_queries) instead of the rollups.

The parts of one request share one visit_overview (in ``PartInputs.shared``): the filters are
evaluated once for the cards, histograms, breakdowns, countries and the visitors table's count.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

from dashboard import filtered_queries, goal_queries
from dashboard.filters import filters_pairs, visits_filtered
from dashboard.funnels import funnel_panel
from dashboard.panels import (
    BREAKDOWN_LIMIT,
    BUSIEST_LIMIT,
    PART_DIMENSIONS,
    SESSIONS_PER_PAGE,
    PartInputs,
    over_time_context,
    rollups_version,
    visitors_table,
    visits_context,
)


def _span(inputs: PartInputs) -> dict:
    """The filters and the range, as every filtered query takes them."""
    return {"filters": inputs.filters, "start": inputs.period.start, "end": inputs.period.end}


def _overview(inputs: PartInputs) -> dict:
    if "overview" not in inputs.shared:
        inputs.shared["overview"] = filtered_queries.visit_overview(
            **_span(inputs), limit=BREAKDOWN_LIMIT
        )
    return inputs.shared["overview"]


def _headline(inputs: PartInputs) -> dict:
    headline = filtered_queries.headline_filtered(**_span(inputs), overview=_overview(inputs))
    return {"headline": headline}


def _visits(inputs: PartInputs) -> dict:
    overview = _overview(inputs)
    histogram = filtered_queries.overview_pages_histogram(overview)
    visitors_histogram = filtered_queries.overview_visitors_histogram(overview)
    busiest = filtered_queries.busiest_filtered(**_span(inputs), limit=BUSIEST_LIMIT)
    return visits_context(histogram, visitors_histogram, busiest)


def _over_time(inputs: PartInputs) -> dict:
    period = inputs.period
    points = filtered_queries.timeseries_filtered(**_span(inputs))
    previous = filtered_queries.timeseries_filtered(
        filters=inputs.filters, start=period.previous.start, end=period.previous.end
    )
    return over_time_context(points, previous, hourly=period.hourly)


def _breakdown(part: str) -> Callable[[PartInputs], dict]:
    def build(inputs: PartInputs) -> dict:
        rows = filtered_queries.overview_breakdowns(_overview(inputs), PART_DIMENSIONS[part])
        return {f"breakdown_{dimension}": values for dimension, values in rows.items()}

    return build


def _pages(inputs: PartInputs) -> dict:
    return {
        "top_pages": filtered_queries.top_pages_filtered(**_span(inputs), limit=BREAKDOWN_LIMIT),
        **_breakdown("pages")(inputs),
    }


def _countries(inputs: PartInputs) -> dict:
    return {"countries": filtered_queries.overview_countries(_overview(inputs))}


def _sessions(inputs: PartInputs) -> dict:
    span = _span(inputs)
    # Alone (a page of the table, or the cached rest of the page) a count is cheaper than the
    # overview; with the other parts it is read already.
    total = (
        inputs.shared["overview"]["first"]["visits"]
        if "overview" in inputs.shared
        else filtered_queries.new_visitor_count_filtered(**span)
    )
    return visitors_table(
        total=total,
        page=inputs.page,
        rows=lambda page: filtered_queries.visitors_page_filtered(
            **span, page=page, per_page=SESSIONS_PER_PAGE
        ),
    )


def _events(inputs: PartInputs) -> dict:
    return {"events": filtered_queries.events_filtered(**_span(inputs))}


def _goals(inputs: PartInputs) -> dict:
    visits = visits_filtered(**_span(inputs))
    return {
        "goals": goal_queries.goal_totals(
            start=inputs.period.start, end=inputs.period.end, visits=visits
        ),
        "goals_loaded": True,
        "currency": settings.TRACKER_CURRENCY,
    }


def _funnels(inputs: PartInputs) -> dict:
    panel = funnel_panel(
        start=inputs.period.start,
        end=inputs.period.end,
        version=rollups_version,
        visits=visits_filtered(**_span(inputs)),
        filters_key=repr(filters_pairs(inputs.filters)),
    )
    return {"funnels": panel, "funnels_loaded": True}


FILTERED_PARTS: dict[str, Callable[[PartInputs], dict]] = {
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


def filtered_part(part: str, inputs: PartInputs) -> dict | None:
    """One part's context under filters; None for the parts filters do not change ("live")."""
    build = FILTERED_PARTS.get(part)
    return build(inputs) if build else None
