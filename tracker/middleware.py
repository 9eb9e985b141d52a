"""The door of the write side: decide whether a request is a page view, and record it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import import_module

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from tracker.buffer import sink_from_settings
from tracker.classify import (
    PathExclusion,
    UserAgentClass,
    announces_bot,
    classifier_warm_up,
    classify_user_agent,
    is_excluded_by_headers,
    is_html,
)
from tracker.recording import visit_record

logger = logging.getLogger(__name__)


class VisitTrackingMiddleware:
    """Record one raw visit per real page view. Goes right after ``SessionMiddleware``.

    Settings and the sink are resolved once here, as ``SessionMiddleware`` resolves its engine.
    Its response hook runs before ``SessionMiddleware`` saves the session, which lets it create
    the session of a tracked visitor and keep a crawler from leaving one behind.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.respect_dnt = settings.TRACKER_RESPECT_DNT
        self.trusted_proxies = settings.TRACKER_TRUSTED_PROXIES
        self.path_exclusion = PathExclusion(
            url_prefixes=[settings.STATIC_URL or "", settings.MEDIA_URL or ""],
            patterns=settings.TRACKER_EXCLUDE_PATHS,
        )
        self.sink = sink_from_settings()
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore
        self.failure_count = 0
        # Built with the WSGI / ASGI handler, so at worker start: not in a visitor's page view.
        classifier_warm_up()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        # Lends the sink and the settings to the events the view records (tracker.events).
        request.visit_tracker = self
        self.drop_unstorable_session_key(request)
        response = self.get_response(request)
        agent = classify_user_agent(request.META.get("HTTP_USER_AGENT", ""))
        if agent.is_declared_crawler or announces_bot(request.META):
            self.keep_sessionless(request)
        elif self.is_page_view(request, response, agent):
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            try:
                visit_record(
                    request=request,
                    response=response,
                    agent=agent,
                    elapsed_ms=elapsed_ms,
                    sink=self.sink,
                    trusted_proxies=self.trusted_proxies,
                )
            except Exception:
                # Bookkeeping never breaks a page: log it, count it, serve the page.
                self.failure_count += 1
                logger.exception("Recording a visit failed (%d failures)", self.failure_count)
        return response

    def is_page_view(
        self, request: HttpRequest, response: HttpResponse, agent: UserAgentClass
    ) -> bool:
        """Return True for a human's GET (or boosted htmx navigation) answered with a page."""
        return (
            request.method == "GET"
            and not agent.is_bot
            and hasattr(request, "session")
            and not (300 <= response.status_code < 400 or response.status_code < 200)
            and is_html(response.get("Content-Type", ""))
            and not is_excluded_by_headers(request.META, respect_dnt=self.respect_dnt)
            and not self.path_exclusion.excludes(request.path)
        )

    def drop_unstorable_session_key(self, request: HttpRequest) -> None:
        """Start afresh when the session cookie holds a NUL byte: PostgreSQL refuses it in a
        query, so loading that session would turn any page into a 500."""
        session = getattr(request, "session", None)
        if session is not None and "\x00" in (session.session_key or ""):
            request.session = self.session_store(None)

    @staticmethod
    def keep_sessionless(request: HttpRequest) -> None:
        """Stop a crawler's request from creating a session (the counter page writes one)."""
        session = getattr(request, "session", None)
        if session is not None and session.session_key is None:
            session.modified = False
