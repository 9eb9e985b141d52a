"""The dashboard's doors: validate the parameters, call the queries, render a page or a panel.

Every view is staff only. An htmx request gets the panel it targets (a named partial of the
page's one template); the same URL without htmx renders the whole page.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from dashboard import event_queries, exports, queries
from dashboard.forms import DashboardFilterForm
from dashboard.panels import PAGE_PANELS, PANELS, panel_context, stats_figures
from tracker.events import EventRefused, event_name_clean


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


INDEX_TEMPLATE = "dashboard/index.html"
EVENT_PROPS_TEMPLATE = "dashboard/_event_props.html"
SESSION_TEMPLATE = "dashboard/session.html"


def staff_only(view: Callable) -> Callable:
    """Anonymous users go to the login page (htmx: a full-page redirect); non-staff get 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            next_url = (request.htmx and request.htmx.current_url_abs_path) or (
                request.get_full_path()
            )
            if request.htmx:
                login_url = f"{settings.LOGIN_URL}?{urlencode({'next': next_url})}"
                return HttpResponseClientRedirect(login_url)
            return redirect_to_login(next_url)
        if not request.user.is_staff:
            raise PermissionDenied("The dashboard is for staff users.")
        return view(request, *args, **kwargs)

    return wrapper


def dashboard_view(view: Callable) -> Callable:
    """GET only, staff only, never cached (redirects and 403s neither); varies with htmx headers."""
    return require_GET(never_cache(vary_on_headers("HX-Request", "HX-Target")(staff_only(view))))


def _filters(request) -> DashboardFilterForm | HttpResponse:
    form = DashboardFilterForm(request.GET)
    if form.is_valid():
        return form
    message = f"Invalid dashboard parameters. {form.error_message()}"
    if request.htmx:
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
    return render(request, "dashboard/bad_request.html", {"message": message}, status=400)


def _partial(request) -> str | None:
    """The panel an htmx request targets, or None for a full page (and history restores)."""
    if not request.htmx or request.htmx.history_restore_request:
        return None
    target = request.htmx.target or ""
    return target if target in PANELS else "panels"


@dashboard_view
def index(request: HtmxHttpRequest) -> HttpResponse:
    form = _filters(request)
    if isinstance(form, HttpResponse):
        return form
    now = timezone.now()
    period = form.period(now=now)
    partial = _partial(request)
    names = PAGE_PANELS if partial in (None, "panels") else [partial]
    context = {
        "form": form,
        "period": period,
        "path": form.cleaned_data["path"],
        "query": form.query_string(page=None),
        "range_query": form.query_string(path=None, page=None),
        "range_links": form.range_links(period),
        "time_zone": timezone.get_current_timezone_name(),
        "visit_timeout": settings.TRACKER_VISIT_TIMEOUT,
        **panel_context(
            names,
            period=period,
            path=form.cleaned_data["path"],
            page=form.cleaned_data["page"] or 1,
            now=now,
        ),
    }
    template = f"{INDEX_TEMPLATE}#{partial}" if partial else INDEX_TEMPLATE
    return render(request, template, context)


@dashboard_view
def session_detail(request: HtmxHttpRequest, tracking_id: uuid.UUID) -> HttpResponse:
    form = _filters(request)
    if isinstance(form, HttpResponse):
        return form
    timeline = queries.session_timeline(tracking_id=tracking_id)
    if timeline is None:
        raise Http404("No visitor has this id.")
    events = event_queries.timeline_events(timeline=timeline)
    context = {
        "timeline": timeline,
        "visits_with_events": list(zip(timeline.visits, events, strict=True)),
        "currency": settings.TRACKER_CURRENCY,
        "query": form.query_string(page=None),
    }
    partial = _partial(request)
    template = f"{SESSION_TEMPLATE}#timeline" if partial else SESSION_TEMPLATE
    return render(request, template, context)


def _export_name(prefix: str, period, extension: str) -> str:
    first = timezone.localtime(period.start).date()
    last = timezone.localtime(period.end - dt.timedelta(microseconds=1)).date()
    return f"{prefix}-{first:%Y-%m-%d}-{last:%Y-%m-%d}.{extension}"


def _csv_export(request: HtmxHttpRequest, *, name: str, columns: list[str], rows) -> HttpResponse:
    """Stream ``rows(start=, end=, path=)`` for the requested range as a CSV attachment."""
    form = _filters(request)
    if isinstance(form, HttpResponse):
        return form
    period = form.period(now=timezone.now())
    lines = exports.csv_lines(
        columns, rows(start=period.start, end=period.end, path=form.cleaned_data["path"])
    )
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    filename = _export_name(name, period, "csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@dashboard_view
def export_sessions(request: HtmxHttpRequest) -> HttpResponse:
    # The file keeps its name (bookmarked URLs); its rows are the range's visits.
    return _csv_export(
        request, name="sessions", columns=exports.VISIT_COLUMNS, rows=exports.visit_rows
    )


@dashboard_view
def export_pages(request: HtmxHttpRequest) -> HttpResponse:
    return _csv_export(request, name="pages", columns=exports.PAGE_COLUMNS, rows=exports.page_rows)


@dashboard_view
def export_events(request: HtmxHttpRequest) -> HttpResponse:
    return _csv_export(
        request, name="events", columns=exports.EVENT_COLUMNS, rows=exports.event_rows
    )


@dashboard_view
def event_props(request: HtmxHttpRequest) -> HttpResponse:
    """The props' values of one event name in the range (the events panel's drill-down)."""
    form = _filters(request)
    if isinstance(form, HttpResponse):
        return form
    try:
        name = event_name_clean(request.GET.get("name"))
    except EventRefused as error:
        return HttpResponseBadRequest(f"name: {error}", content_type="text/plain; charset=utf-8")
    period = form.period(now=timezone.now())
    values = event_queries.event_prop_values(name=name, start=period.start, end=period.end)
    context = {
        "name": name,
        "prop_values": values,
        "retention_days": settings.TRACKER_RAW_RETENTION_DAYS,
    }
    return render(request, EVENT_PROPS_TEMPLATE, context)


@dashboard_view
def stats_json(request: HtmxHttpRequest) -> HttpResponse:
    form = DashboardFilterForm(request.GET)
    if not form.is_valid():
        return JsonResponse({"error": form.error_message()}, status=400)
    now = timezone.now()
    period = form.period(now=now)
    figures = stats_figures(period=period, path=form.cleaned_data["path"], now=now)
    return JsonResponse(figures)
