"""What each dashboard panel needs: the queries it runs and the charts it draws.

A panel rendered alone (an htmx request) runs only its own queries, so polling "live" or paging
the sessions table never recomputes the rest of the page.

Rollups change only when an aggregation run (or a rebuild) commits, and each run stamps the
aggregation state. Rollup panels are therefore cached under that stamp: exact, never stale, and
recomputed once after each run. "live" and the sessions table are always read fresh.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

from dashboard import charts, event_queries, filtered_queries, goal_queries, queries
from dashboard.filters import NO_FILTERS, Filters, filters_pairs, visits_filtered
from dashboard.forms import Period
from dashboard.funnels import funnel_panel
from tracker.goals import MATCH_FIELDS
from tracker.models import AggregationState, Goal

Dimension = queries.Dimension
GOAL_DEFINITION = ["name", *MATCH_FIELDS]
SESSIONS_PER_PAGE = 25
BREAKDOWN_LIMIT = 10
BUSIEST_LIMIT = 10

PAGE_DIMENSIONS = [Dimension.ENTRY_PATH, Dimension.EXIT_PATH]
SOURCE_DIMENSIONS = [
    Dimension.REFERRER,
    Dimension.UTM_SOURCE,
    Dimension.UTM_MEDIUM,
    Dimension.UTM_CAMPAIGN,
]
TECH_DIMENSIONS = [Dimension.BROWSER, Dimension.OS, Dimension.DEVICE]
COUNTRY_DIMENSIONS = [Dimension.COUNTRY]
# The session dimensions each part shows: one query ranks all of those a request needs.
PART_DIMENSIONS = {
    "pages": PAGE_DIMENSIONS,
    "sources": SOURCE_DIMENSIONS,
    "tech": TECH_DIMENSIONS,
    "countries": COUNTRY_DIMENSIONS,
}


PANEL_CACHE_SECONDS = 15 * 60


@dataclass
class PartInputs:
    """What the parts of one panel_context call read: the range, the path or filters, the
    visitors table's page, the time, the breakdowns ranked for all of them at once, and
    ``shared``, what a part reads once for the others (it lives for one call, so it never
    serves an older aggregation run's figures)."""

    period: Period
    path: str
    page: int
    now: dt.datetime
    filters: Filters = NO_FILTERS
    breakdowns: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)

    def repeats(self) -> dict[int, int]:
        """The range's repeat visits, for the headline and the visits parts."""
        if "repeats" not in self.shared:
            self.shared["repeats"] = queries.repeat_visits(
                start=self.period.start, end=self.period.end
            )
        return self.shared["repeats"]


def _headline(inputs: PartInputs) -> dict:
    # Under a path the headline counts visitors from the per-visit table, not from repeats.
    period, path = inputs.period, inputs.path
    repeats = None if path else inputs.repeats()
    return {
        "headline": queries.headline_totals(
            start=period.start, end=period.end, path=path, repeats=repeats
        )
    }


def _live(inputs: PartInputs) -> dict:
    return {"live_sessions": queries.live_visitors(now=inputs.now)}


def _visits(inputs: PartInputs) -> dict:
    period = inputs.period
    histogram = queries.pages_per_visit_histogram(start=period.start, end=period.end)
    # Every visit of the range falls in one pages bucket: their sum is the range's visits.
    visitors_histogram = queries.visits_per_visitor_histogram(
        start=period.start,
        end=period.end,
        visits=sum(row["visits"] for row in histogram),
        repeats=inputs.repeats(),
    )
    busiest = queries.busiest_visits(
        start=period.start,
        end=period.end,
        limit=BUSIEST_LIMIT,
        path=inputs.path,
        histogram=histogram,
    )
    return visits_context(histogram, visitors_histogram, busiest)


def visits_context(histogram: list[dict], visitors_histogram: list[dict], busiest: list) -> dict:
    """The visits panel's figures and charts, from the rollups or under filters alike."""
    return {
        "histogram": histogram,
        "histogram_figure": charts.pages_per_visit_figure(histogram),
        "visitors_histogram": visitors_histogram,
        "visitors_histogram_figure": charts.visits_per_visitor_figure(visitors_histogram),
        "busiest": busiest,
        "busiest_figure": charts.busiest_visits_figure(busiest) if busiest else None,
    }


def _over_time(inputs: PartInputs) -> dict:
    period, path = inputs.period, inputs.path
    points = queries.timeseries(start=period.start, end=period.end, path=path)
    previous = queries.timeseries(start=period.previous.start, end=period.previous.end, path=path)
    return over_time_context(points, previous, hourly=period.hourly)


def over_time_context(points: list[dict], previous: list[dict], *, hourly: bool) -> dict:
    """The time series part: both figures cached together, so that switching the comparison
    with the previous period on or off reads nothing new."""
    return {
        # Each bucket with the one of the previous period that the comparison draws under it.
        "timeseries": [
            {**point, "previous": before}
            for point, before in zip(points, previous + [None] * len(points), strict=False)
        ],
        "timeseries_hourly": hourly,
        "timeseries_figure": charts.timeseries_figure(points, hourly=hourly),
        "timeseries_compare_figure": charts.timeseries_figure(
            points, hourly=hourly, previous=previous
        ),
    }


def _breakdown(dimensions: list[str]) -> Callable[[PartInputs], dict]:
    def build(inputs: PartInputs) -> dict:
        return {f"breakdown_{d}": inputs.breakdowns[d] for d in dimensions}

    return build


def _pages(inputs: PartInputs) -> dict:
    return {
        "top_pages": queries.top_pages(
            start=inputs.period.start,
            end=inputs.period.end,
            limit=BREAKDOWN_LIMIT,
            path=inputs.path,
        ),
        **_breakdown(PART_DIMENSIONS["pages"])(inputs),
    }


def _countries(inputs: PartInputs) -> dict:
    return {
        "countries": queries.top_countries(
            start=inputs.period.start,
            end=inputs.period.end,
            limit=BREAKDOWN_LIMIT,
            breakdown=inputs.breakdowns[Dimension.COUNTRY],
        )
    }


def _sessions(inputs: PartInputs) -> dict:
    period, path = inputs.period, inputs.path
    total = queries.new_visitor_count(start=period.start, end=period.end, path=path)
    return visitors_table(
        total=total,
        page=inputs.page,
        rows=lambda page: queries.visitors_page(
            start=period.start, end=period.end, page=page, per_page=SESSIONS_PER_PAGE, path=path
        ),
    )


def visitors_table(*, total: int, page: int, rows: Callable[[int], list[dict]]) -> dict:
    """The visitors table's context: ``rows(page)`` of the page asked for (the last one when it
    is past the end), each visitor with its events by name, and the pager's figures."""
    page_count = max(1, -(-total // SESSIONS_PER_PAGE))
    page = min(page, page_count)
    sessions = rows(page)
    counters = event_queries.visitor_event_counts(
        tracking_ids=[visitor["tracking_id"] for visitor in sessions]
    )
    sessions = [
        {**visitor, "events": counters.get(visitor["tracking_id"], [])} for visitor in sessions
    ]
    first = (page - 1) * SESSIONS_PER_PAGE + 1
    return {
        "sessions": sessions,
        "sessions_last": first + len(sessions) - 1,
        "sessions_total": total,
        "sessions_page": page,
        "sessions_page_count": page_count,
        "sessions_first": first,
    }


def _events(inputs: PartInputs) -> dict:
    # Events have no page dimension in their rollups: the panel shows the whole range's.
    return {"events": event_queries.event_totals(start=inputs.period.start, end=inputs.period.end)}


def _funnels(inputs: PartInputs) -> dict:
    # Cached by funnel_panel itself: its figures also change when staff edit a funnel.
    panel = funnel_panel(start=inputs.period.start, end=inputs.period.end, version=rollups_version)
    return {"funnels": panel, "funnels_loaded": True}


def _goals(inputs: PartInputs) -> dict:
    return {
        "goals": goal_queries.goal_totals(start=inputs.period.start, end=inputs.period.end),
        "goals_loaded": True,
        "currency": settings.TRACKER_CURRENCY,
    }


# Each panel (an htmx target) is made of parts; parts named in CACHED_PARTS read rollups only.
PANELS: dict[str, list[str]] = {
    "cards": ["headline", "live"],
    "live": ["live"],
    "visits": ["visits"],
    "over-time": ["over-time"],
    "pages": ["pages"],
    "sources": ["sources"],
    "tech": ["tech"],
    "countries": ["countries"],
    "sessions": ["sessions"],
    "events": ["events"],
    "funnels": ["funnels"],
    "goals": ["goals"],
}
PARTS: dict[str, Callable[[PartInputs], dict]] = {
    "headline": _headline,
    "live": _live,
    "visits": _visits,
    "over-time": _over_time,
    "pages": _pages,
    "sources": _breakdown(PART_DIMENSIONS["sources"]),
    "tech": _breakdown(PART_DIMENSIONS["tech"]),
    "countries": _countries,
    "sessions": _sessions,
    "events": _events,
    "funnels": _funnels,
    "goals": _goals,
}
CACHED_PARTS = {
    "headline", "visits", "over-time", "pages", "sources", "tech", "countries", "events", "goals",
}  # fmt: skip
# Goals and funnels read goal hits (their cost follows the hits, not the rollups): the page
# leaves placeholders that load those panels by themselves once the rest is shown.
PAGE_PANELS = [
    "cards", "visits", "over-time", "pages", "sources", "tech", "countries", "events", "sessions",
]  # fmt: skip


def rollups_version() -> str:
    """The stamp of the last aggregation runs (visits' and events'): any change to the rollups
    changes it."""
    states = AggregationState.objects.order_by("name").values_list(
        "name", "last_visit_id", "updated_at"
    )
    stamp = "|".join(f"{name}:{last}-{updated.timestamp()}" for name, last, updated in states)
    return stamp or "none"


def goals_version() -> str:
    """The goals as defined now: cached goal figures follow their names and matches (a rebuild
    of their hits restamps the aggregation state, see tracker.goals)."""
    goals = list(Goal.objects.order_by("id").values_list("id", *GOAL_DEFINITION))
    return hashlib.sha256(repr(goals).encode()).hexdigest()[:16]


def part_cache_key(
    part: str, *, version: str, period: Period, path: str, filters: Filters = NO_FILTERS
) -> str:
    """The one place that names dashboard cache keys (hashed: paths are long and arbitrary)."""
    raw = f"{version}|{part}|{period.start.isoformat()}|{period.end.isoformat()}|{path}"
    if filters:
        raw = f"{raw}|{filters_pairs(filters)!r}"
    return f"dashboard:part:v1:{hashlib.sha256(raw.encode()).hexdigest()}"


def panel_context(
    names: list[str],
    *,
    period: Period,
    path: str,
    page: int,
    now: dt.datetime,
    filters: Filters = NO_FILTERS,
) -> dict:
    """The context the named panels need, and nothing more; rollup parts come from the cache.

    Under ``filters`` the parts read the per-visit table instead (filtered_panels), cached alike.
    """
    # Here, not at the top: filtered_panels imports this module.
    from dashboard.filtered_panels import filtered_part

    parts = [part for name in names for part in PANELS[name]]
    keys: dict[str, str] = {}
    if any(part in CACHED_PARTS for part in parts):
        version = rollups_version()
        # Goal figures also follow the goals' definitions.
        version_of = {"goals": f"{version}|{goals_version()}"} if "goals" in parts else {}
        keys = {
            part: part_cache_key(
                part,
                version=version_of.get(part, version),
                period=period,
                path=path,
                filters=filters,
            )
            for part in parts
            if part in CACHED_PARTS
        }
    hits = cache.get_many(list(keys.values())) if keys else {}
    missing = [part for part in parts if keys.get(part) not in hits]
    dimensions = (
        [d for part in missing for d in PART_DIMENSIONS.get(part, [])] if not filters else []
    )
    breakdowns = (
        queries.dimension_breakdown(
            start=period.start,
            end=period.end,
            dimensions=dimensions,
            limit=BREAKDOWN_LIMIT,
            path=path,
        )
        if dimensions
        else {}
    )
    context: dict = {}
    computed: dict[str, dict] = {}
    inputs = PartInputs(period, path, page, now, filters=filters, breakdowns=breakdowns)
    for part in parts:
        key = keys.get(part)
        if key in hits:
            context.update(hits[key])
            continue
        values = filtered_part(part, inputs) if filters else None
        if values is None:
            values = PARTS[part](inputs)
        context.update(values)
        if key:
            computed[key] = values
    if computed:
        cache.set_many(computed, timeout=PANEL_CACHE_SECONDS)
    return context


def stats_figures(
    *, period: Period, path: str, now: dt.datetime, filters: Filters = NO_FILTERS
) -> dict:
    """stats.json: its rollup figures cached like the panels, "live" always read fresh."""
    version = f"{rollups_version()}|{goals_version()}"
    key = part_cache_key("stats", version=version, period=period, path=path, filters=filters)
    figures = cache.get(key)
    visits = None
    if figures is None and filters:
        figures = filtered_queries.stats_filtered(
            filters=filters, start=period.start, end=period.end
        )
        visits = visits_filtered(filters=filters, start=period.start, end=period.end)
        figures["goals"] = goal_queries.goal_stats(
            start=period.start, end=period.end, visits=visits, range_visitors=figures["visitors"]
        )
        cache.set(key, figures, timeout=PANEL_CACHE_SECONDS)
    if figures is None:
        figures = queries.stats_from_rollups(start=period.start, end=period.end, path=path)
        figures["events"] = event_queries.event_totals(start=period.start, end=period.end)
        figures["goals"] = goal_queries.goal_stats(start=period.start, end=period.end)
        cache.set(key, figures, timeout=PANEL_CACHE_SECONDS)
    if filters and visits is None:
        visits = visits_filtered(filters=filters, start=period.start, end=period.end)
    funnels = funnel_panel(
        start=period.start,
        end=period.end,
        version=lambda: version,
        visits=visits,
        filters_key=repr(filters_pairs(filters)) if filters else "",
    )
    return {
        **figures,
        "funnels": [funnel["report"] for funnel in funnels],
        "live_sessions": queries.live_visitors(now=now),
    }
