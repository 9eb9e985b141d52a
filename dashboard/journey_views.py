"""The Journeys view's door: validate the range and the journey's parameters, render the flows.

Staff only, like every dashboard view; an htmx request gets the #journeys part alone.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.cache import cache
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from dashboard import journeys
from dashboard.filters import Filters, filters_remove, visits_filtered
from dashboard.journey_charts import journey_figure
from dashboard.journey_forms import JourneyForm
from dashboard.panels import goals_version, part_cache_key, rollups_version
from dashboard.views import HtmxHttpRequest, _filters, dashboard_view

JOURNEYS_TEMPLATE = "dashboard/journeys.html"
JOURNEY_CACHE_SECONDS = 15 * 60


def _bad_request(request: HtmxHttpRequest, message: str) -> HttpResponse:
    if request.htmx:
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
    return render(request, "dashboard/bad_request.html", {"message": message}, status=400)


def flow_rows(journey: journeys.Journey, *, range_query: str) -> list[dict]:
    """The table's rows: each page links to the journeys from it (one query string per node)."""
    queries: dict[journeys.JourneyNode, str | None] = {}

    def cell(node: journeys.JourneyNode) -> dict:
        if node not in queries:
            own = urlencode({"from": node.path, "steps": journey.steps})
            queries[node] = (
                "&".join(filter(None, [range_query, own]))
                if node.kind is journeys.NodeKind.PAGE
                else None
            )
        return {"label": node.label, "query": queries[node]}

    return [
        {
            "step": link.step,
            "source": cell(link.source),
            "target": cell(link.target),
            "visits": link.visits,
        }
        for link in journey.links
    ]


def _journey(*, period, form: JourneyForm, filters: Filters) -> journeys.Journey:
    """The journey, cached under the aggregation stamp and the filters (a goal filter also
    follows the goals' definitions); under filters, the flows of the visits that pass them."""
    version = rollups_version()
    if any(item.dimension == "goal" for item in filters):
        version = f"{version}|{goals_version()}"
    key = part_cache_key(
        f"journey:{form.direction}:{form.step_count}",
        version=version,
        period=period,
        path=form.path,
        filters=filters,
    )
    journey = cache.get(key)
    if journey is None:
        journey = journeys.journey(
            start=period.start,
            end=period.end,
            path=form.path or None,
            direction=form.direction,
            steps=form.step_count,
            visits=(
                visits_filtered(filters=filters, start=period.start, end=period.end)
                if filters
                else None
            ),
        )
        cache.set(key, journey, timeout=JOURNEY_CACHE_SECONDS)
    return journey


def _joined(*queries: str) -> str:
    return "&".join(filter(None, queries))


@dashboard_view
def journeys_page(request: HtmxHttpRequest) -> HttpResponse:
    filters = _filters(request)
    if isinstance(filters, HttpResponse):
        return filters
    form = JourneyForm(request.GET)
    if not form.is_valid():
        return _bad_request(request, f"Invalid journey parameters. {form.error_message()}")
    period = filters.period(now=timezone.now())
    journey = _journey(period=period, form=form, filters=filters.filters)
    # The range and the filters (path= beside filters is already entry=; alone it is not one).
    range_query = filters.query_string(path=None, page=None)
    journey_query = form.query_string()
    chips = [
        {
            "filter": item,
            "remove_query": _joined(
                filters.query_string(
                    filters=filters_remove(filters.filters, item), path=None, page=None
                ),
                journey_query,
            ),
        }
        for item in filters.filters
    ]
    context = {
        "form": filters,
        "journey_form": form,
        "period": period,
        "time_zone": timezone.get_current_timezone_name(),
        "journey": journey,
        "journey_figure": journey_figure(journey),
        "flows": flow_rows(journey, range_query=range_query),
        "journeys_url": reverse("dashboard:journeys"),
        "range_query": range_query,
        "journey_query": journey_query,
        "filters": filters.filters,
        "filter_chips": chips,
        "unfiltered_query": _joined(
            filters.query_string(filters=(), path=None, page=None), journey_query
        ),
        "steps_query": form.query_string(steps=None),
        "range_links": filters.range_links(period),
        "step_choices": list(range(journeys.STEPS_MIN, journeys.STEPS_MAX + 1)),
        "backward": journey.direction is journeys.Direction.BACKWARD,
        "keep": journeys.KEEP_DEFAULT,
    }
    partial = request.htmx and not request.htmx.history_restore_request
    template = f"{JOURNEYS_TEMPLATE}#journeys" if partial else JOURNEYS_TEMPLATE
    return render(request, template, context)
