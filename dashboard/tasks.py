"""Celery tasks of the dashboard: thin doors over dashboard.reports."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from dashboard import reports
from tracker.tasks import TRANSIENT_ERRORS

RETRY_BACKOFF_SECONDS = 60
RETRY_BACKOFF_MAX_SECONDS = 1800


class ReportsRefused(Exception):
    """Some reports were refused by the SMTP server; their deliveries wait to be claimed again."""


@shared_task(
    bind=True,
    name="dashboard.tasks.send_reports",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=reports.MAX_ATTEMPTS,
)
def send_reports(self, at: str | None = None) -> int:
    """Send the due email reports once each; retry refused ones later, for the same periods."""
    now = dt.datetime.fromisoformat(at) if at else timezone.now()
    outcome = reports.reports_send_due(now=now)
    if outcome.failed:
        countdown = min(RETRY_BACKOFF_SECONDS * 2**self.request.retries, RETRY_BACKOFF_MAX_SECONDS)
        raise self.retry(
            exc=ReportsRefused(f"{outcome.failed} report(s) refused by the SMTP server"),
            kwargs={"at": now.isoformat()},
            countdown=countdown,
        )
    return outcome.sent
