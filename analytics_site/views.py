"""The classic session pages from Django's sessions tutorial, and the health check."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from analytics_site.health import component_states
from tracker import record_event

logger = logging.getLogger(__name__)


@require_GET
def counter(request: HttpRequest) -> HttpResponse:
    """Count this session's visits the tutorial's way; exact analytics live in the tracker."""
    num_visits = request.session.get("num_visits", 0) + 1
    request.session["num_visits"] = num_visits
    request.session.set_test_cookie()
    return render(request, "pages/counter.html", {"num_visits": num_visits})


@require_GET
def about(request: HttpRequest) -> HttpResponse:
    cookie_worked = request.session.test_cookie_worked()
    if cookie_worked:
        logger.info("Cookie Tested Successfully")
        request.session.delete_test_cookie()
        record_event(request, "cookie_tested")
    return render(request, "pages/about.html", {"cookie_worked": cookie_worked})


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    states = component_states()
    healthy = all(state["ok"] for state in states.values())
    return JsonResponse({"ok": healthy, "components": states}, status=200 if healthy else 503)
