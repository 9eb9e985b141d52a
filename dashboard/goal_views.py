"""The staff Goals page: list the goals, add one (htmx form), delete one."""

from __future__ import annotations

from django.conf import settings
from django.db.models import ProtectedError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.goal_forms import GoalForm
from dashboard.views import HtmxHttpRequest, staff_only
from tracker import goals
from tracker.models import Goal

GOALS_TEMPLATE = "dashboard/goals.html"


def _goals_render(
    request: HtmxHttpRequest, *, form: GoalForm | None = None, status: int = 200, **extra
) -> HttpResponse:
    context = {
        "goals": Goal.objects.all(),
        "goal_form": form or GoalForm(),
        "kinds": Goal.Kind,
        "retention_days": settings.TRACKER_RAW_RETENTION_DAYS,
        **extra,
    }
    template = f"{GOALS_TEMPLATE}#goals" if request.htmx else GOALS_TEMPLATE
    return render(request, template, context, status=status)


@never_cache
@staff_only
@require_http_methods(["GET", "POST"])
def goals_page(request: HtmxHttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _goals_render(request)
    form = GoalForm(request.POST)
    if not form.is_valid():
        return _goals_render(request, form=form, status=400)
    goal = goals.goal_create(**form.cleaned_data)
    if not request.htmx:
        return redirect("dashboard:goals")
    return _goals_render(request, created=goal)


@never_cache
@staff_only
@require_POST
def goal_delete(request: HtmxHttpRequest, goal_id: int) -> HttpResponse:
    try:
        goals.goal_delete(goal_id=goal_id)
    except ProtectedError:
        message = "This goal is a step of a funnel: remove it from the funnel first."
        return _goals_render(request, status=400, delete_error=message)
    if not request.htmx:
        return redirect("dashboard:goals")
    return _goals_render(request)
