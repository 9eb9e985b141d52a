"""Site-wide middleware that belongs to no app."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse

from analytics_site.database import database_wait_until_available


class DatabaseReconnectMiddleware:
    """Let a request that arrives while the database restarts wait for it rather than fail.

    Goes before ``SessionMiddleware``: loading the session is the first use of the database.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.timeout = settings.DATABASE_WAIT_SECONDS

    def __call__(self, request: HttpRequest) -> HttpResponse:
        database_wait_until_available(connection=connection, timeout=self.timeout)
        return self.get_response(request)
