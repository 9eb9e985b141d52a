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
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect, push_url
from django_htmx.middleware import HtmxDetails

from dashboard import event_queries, exports, queries, reports, sharing
from dashboard.forms import DashboardFilterForm, ReportSettingsForm, SharedLinkForm
from dashboard.models import ReportKind, ReportSubscription, SharedLink
from dashboard.panels import PAGE_PANELS, PANELS, panel_context, stats_figures
from tracker.events import EventRefused, event_name_clean


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


INDEX_TEMPLATE = "dashboard/index.html"
EVENT_PROPS_TEMPLATE = "dashboard/_event_props.html"
SESSION_TEMPLATE = "dashboard/session.html"
SETTINGS_TEMPLATE = "dashboard/settings.html"
# Through a shared link: the aggregate panels; never the visitors table and its timelines.
SHARED_PANELS = [name for name in PAGE_PANELS if name != "sessions"]
SHARED_TARGETS = [name for name in PANELS if name != "sessions"]


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
    return _dashboard_page(request, link=None, dashboard_url=reverse("dashboard:index"))


def _dashboard_page(
    request: HtmxHttpRequest, *, link: SharedLink | None, dashboard_url: str
) -> HttpResponse:
    """The dashboard page or one of its panels; through a shared link, the aggregate ones only."""
    form = _filters(request)
    if isinstance(form, HttpResponse):
        return form
    canonical = f"{dashboard_url}?{form.query_string(page=None)}"
    if form.from_filter_form and not request.htmx:
        return redirect(canonical)
    now = timezone.now()
    period = form.period(now=now)
    partial = _partial(request)
    page_panels = SHARED_PANELS if link else PAGE_PANELS
    if link and partial not in (None, "panels", *SHARED_TARGETS):
        partial = "panels"
    names = page_panels if partial in (None, "panels") else [partial]
    context = {
        "form": form,
        "period": period,
        "path": form.cleaned_data["path"],
        "query": form.query_string(page=None),
        "range_query": form.query_string(path=None, page=None),
        "range_links": form.range_links(period),
        "compare": form.cleaned_data["compare"] == "1",
        "compare_query": form.query_string(compare=None if form.cleaned_data["compare"] else "1"),
        "filters": form.filters,
        "filter_chips": form.filter_links(),
        "unfiltered_query": form.query_string(filters=(), page=None),
        "retention_days": settings.TRACKER_RAW_RETENTION_DAYS,
        "time_zone": timezone.get_current_timezone_name(),
        "visit_timeout": settings.TRACKER_VISIT_TIMEOUT,
        "dashboard_url": dashboard_url,
        "shared_link": link,
        **panel_context(
            names,
            period=period,
            path=form.cleaned_data["path"],
            page=form.cleaned_data["page"] or 1,
            now=now,
            filters=form.filters,
        ),
    }
    template = f"{INDEX_TEMPLATE}#{partial}" if partial else INDEX_TEMPLATE
    response = render(request, template, context)
    return push_url(response, canonical) if form.from_filter_form else response


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
        columns,
        rows(
            start=period.start,
            end=period.end,
            path=form.cleaned_data["path"],
            filters=form.filters,
        ),
    )
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    filename = _export_name(name, period, "csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _export_sessions(request: HtmxHttpRequest) -> HttpResponse:
    # The file keeps its name (bookmarked URLs); its rows are the range's visits.
    return _csv_export(
        request, name="sessions", columns=exports.VISIT_COLUMNS, rows=exports.visit_rows
    )


def _export_pages(request: HtmxHttpRequest) -> HttpResponse:
    return _csv_export(request, name="pages", columns=exports.PAGE_COLUMNS, rows=exports.page_rows)


export_sessions = dashboard_view(_export_sessions)
export_pages = dashboard_view(_export_pages)


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
    return _stats_json(request)


def _stats_json(request: HtmxHttpRequest) -> HttpResponse:
    form = DashboardFilterForm(request.GET)
    if not form.is_valid():
        return JsonResponse({"error": form.error_message()}, status=400)
    now = timezone.now()
    period = form.period(now=now)
    figures = stats_figures(
        period=period, path=form.cleaned_data["path"], now=now, filters=form.filters
    )
    return JsonResponse(figures)


def settings_view(view: Callable) -> Callable:
    """Staff only, never cached; the settings page and the forms posted from it.

    Outside the method check, so anyone but staff gets the login page or 403 whatever the method.
    """
    return never_cache(staff_only(view))


def _settings_render(
    request: HtmxHttpRequest, *, partial: str | None = None, status: int = 200, **extra
) -> HttpResponse:
    """The settings page, or one of its sections for htmx, with any bound forms in ``extra``."""
    subscribed = ReportSubscription.objects.filter(user=request.user).values_list("kind", flat=True)
    context = {
        "report_form": ReportSettingsForm(
            initial={"email": request.user.email, "kinds": list(subscribed)}
        ),
        "link_form": SharedLinkForm(),
        "links": SharedLink.objects.select_related("created_by"),
        "report_kinds": ReportKind,
        "now": timezone.now(),
        **extra,
    }
    template = f"{SETTINGS_TEMPLATE}#{partial}" if partial and request.htmx else SETTINGS_TEMPLATE
    return render(request, template, context, status=status)


@settings_view
@require_GET
def settings_page(request: HtmxHttpRequest) -> HttpResponse:
    return _settings_render(request)


@settings_view
@require_POST
def reports_update(request: HtmxHttpRequest) -> HttpResponse:
    form = ReportSettingsForm(request.POST)
    if not form.is_valid():
        return _settings_render(request, partial="reports", status=400, report_form=form)
    reports.subscriptions_set(
        user=request.user, email=form.cleaned_data["email"], kinds=form.cleaned_data["kinds"]
    )
    if not request.htmx:
        return redirect("dashboard:settings")
    return _settings_render(request, partial="reports", reports_saved=True)


@settings_view
@require_POST
def shared_link_create(request: HtmxHttpRequest) -> HttpResponse:
    form = SharedLinkForm(request.POST)
    if not form.is_valid():
        return _settings_render(request, partial="links", status=400, link_form=form)
    now = timezone.now()
    link, token = sharing.shared_link_create(
        user=request.user,
        label=form.cleaned_data["label"],
        expires_at=form.expires_at(now=now),
        allow_exports=form.cleaned_data["allow_exports"],
    )
    # Shown once, in this response only: no redirect, no message stored in the session.
    new_link_url = request.build_absolute_uri(reverse("share:index", args=[token]))
    return _settings_render(request, partial="links", new_link=link, new_link_url=new_link_url)


@settings_view
@require_POST
def shared_link_revoke(request: HtmxHttpRequest, link_id: int) -> HttpResponse:
    if not SharedLink.objects.filter(pk=link_id).exists():
        raise Http404("No shared link has this id.")
    sharing.shared_link_revoke(link_id=link_id, now=timezone.now())
    if not request.htmx:
        return redirect("dashboard:settings")
    return _settings_render(request, partial="links")


def shared_view(view: Callable) -> Callable:
    """Open a view through a shared link's token: 404 unless active, 429 past the rate limit.

    Shared pages are never indexed, cached or given a Referer (the token is in their URL).
    """

    @wraps(view)
    def wrapper(request, token: str, *args, **kwargs):
        now = timezone.now()
        link = sharing.shared_link_find(token=token, now=now)
        if link is None:
            raise Http404("No shared dashboard at this address.")
        if sharing.shared_link_allow_request(link=link, now=now):
            sharing.shared_link_touch(link=link, now=now)
            response = view(request, link=link, token=token, **kwargs)
        else:
            response = HttpResponse(
                "Too many requests through this link; try again in a minute.",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(sharing.RATE_WINDOW_SECONDS)
        response["X-Robots-Tag"] = "noindex"
        response["Referrer-Policy"] = "no-referrer"
        return response

    return require_GET(never_cache(vary_on_headers("HX-Request", "HX-Target")(wrapper)))


@shared_view
def shared_index(request: HtmxHttpRequest, *, link: SharedLink, token: str) -> HttpResponse:
    return _dashboard_page(request, link=link, dashboard_url=reverse("share:index", args=[token]))


@shared_view
def shared_stats_json(request: HtmxHttpRequest, *, link: SharedLink, token: str) -> HttpResponse:
    # The same aggregate figures as the shared panels; it lists no visitor.
    return _stats_json(request)


@shared_view
def shared_export_sessions(
    request: HtmxHttpRequest, *, link: SharedLink, token: str
) -> HttpResponse:
    if not link.allow_exports:
        raise Http404("This shared link does not allow exports.")
    return _export_sessions(request)


@shared_view
def shared_export_pages(request: HtmxHttpRequest, *, link: SharedLink, token: str) -> HttpResponse:
    if not link.allow_exports:
        raise Http404("This shared link does not allow exports.")
    return _export_pages(request)
