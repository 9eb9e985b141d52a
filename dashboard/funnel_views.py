"""The funnels page: list, create and delete funnels (staff only, CSRF on, htmx or not)."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from dashboard.funnel_edits import FunnelForm, funnel_create, funnel_delete
from dashboard.funnels import funnels_with_steps
from dashboard.views import HtmxHttpRequest, settings_view
from tracker.models import Goal

FUNNELS_TEMPLATE = "dashboard/funnels.html"


def _funnels_render(
    request: HtmxHttpRequest, *, form: FunnelForm | None = None, status: int = 200, **extra
) -> HttpResponse:
    context = {
        "form": form or FunnelForm(),
        "funnels": funnels_with_steps(),
        "has_goals": Goal.objects.exists(),
        **extra,
    }
    template = f"{FUNNELS_TEMPLATE}#editor" if request.htmx else FUNNELS_TEMPLATE
    return render(request, template, context, status=status)


@settings_view
@require_GET
def funnels_page(request: HtmxHttpRequest) -> HttpResponse:
    return _funnels_render(request)


@settings_view
@require_POST
def funnel_add(request: HtmxHttpRequest) -> HttpResponse:
    form = FunnelForm(request.POST)
    if not form.is_valid():
        return _funnels_render(request, form=form, status=400)
    funnel = funnel_create(
        name=form.cleaned_data["name"],
        across_visits=form.cleaned_data["across_visits"],
        goals=form.cleaned_data["goals"],
    )
    if not request.htmx:
        return redirect("dashboard:funnels")
    return _funnels_render(request, created=funnel)


@settings_view
@require_POST
def funnel_remove(request: HtmxHttpRequest, funnel_id: int) -> HttpResponse:
    if not funnel_delete(funnel_id=funnel_id):
        raise Http404("No funnel has this id.")
    if not request.htmx:
        return redirect("dashboard:funnels")
    return _funnels_render(request)
