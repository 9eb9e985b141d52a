"""Email reports: each subscriber gets the last complete week's or month's figures, once.

Claim, then send: a report's ReportDelivery row is inserted (unique per user, kind and period)
before the email goes out, so a second beat, a retry or the command finds it claimed and sends
nothing. Sending first and recording after would let a crash or a second beat in between send
the same report twice; claiming first can at worst lose one report (a crash between the claim
and the send leaves it SENDING, visible in the admin and never resent). Never twice wins.

A refusal by the SMTP server (a 4xx/5xx reply, or no connection at all) proves nothing was
delivered: the delivery is FAILED and the next attempt claims it again, up to MAX_ATTEMPTS. An
error after the message may have reached the server (the connection lost mid-send) is UNKNOWN
and never retried.

The figures come from dashboard.queries, as the dashboard computes them for the same range; the
change is against the period of the same length just before, as on the dashboard the email links
to.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from dashboard import queries
from dashboard.forms import local_midnight
from dashboard.models import ReportDelivery, ReportKind, ReportSubscription
from tracker.models import Visit
from tracker.rollups import visits_watermark

logger = logging.getLogger(__name__)

REPORT_ROWS = 10
MAX_ATTEMPTS = 5
Status = ReportDelivery.Status
# The server said no, or there was no connection: nothing was delivered, so retrying is safe.
SMTP_REFUSALS = (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused)


@dataclass(frozen=True)
class ReportPeriod:
    """Whole days [first_day, last_day] in the site's time zone, and the instants they span."""

    kind: str
    first_day: dt.date
    last_day: dt.date

    @property
    def start(self) -> dt.datetime:
        return local_midnight(self.first_day)

    @property
    def end(self) -> dt.datetime:
        return local_midnight(self.last_day + dt.timedelta(days=1))

    @property
    def label(self) -> str:
        if self.kind == ReportKind.MONTHLY:
            return f"{self.first_day:%B %Y}"
        return f"{self.first_day:%-d %b} to {self.last_day:%-d %b %Y}"


def report_period(*, kind: str, now: dt.datetime) -> ReportPeriod:
    """The last complete week (Monday to Sunday) or calendar month before ``now``."""
    today = timezone.localdate(now)
    if kind == ReportKind.WEEKLY:
        this_monday = today - dt.timedelta(days=today.weekday())
        return ReportPeriod(kind, this_monday - dt.timedelta(days=7), this_monday - dt.timedelta(1))
    if kind == ReportKind.MONTHLY:
        last_day = today.replace(day=1) - dt.timedelta(days=1)
        return ReportPeriod(kind, last_day.replace(day=1), last_day)
    raise ValueError(f"Unknown report kind {kind!r}")


def dashboard_range_url(*, period: ReportPeriod) -> str:
    """The absolute dashboard URL of the period (SITE_URL: emails are read off the site)."""
    query = urlencode({"start": period.first_day.isoformat(), "end": period.last_day.isoformat()})
    return f"{settings.SITE_URL}{reverse('dashboard:index')}?{query}"


def report_context(*, period: ReportPeriod) -> dict:
    """The figures of one period, the same for every subscriber: computed once per run."""
    headline = queries.headline_totals(start=period.start, end=period.end)
    referrer = queries.Dimension.REFERRER
    sources = queries.dimension_breakdown(
        start=period.start, end=period.end, dimensions=[referrer], limit=REPORT_ROWS
    )[referrer]
    dashboard_url = dashboard_range_url(period=period)
    return {
        "period": period,
        "kind_label": ReportKind(period.kind).label.split(" ")[0],
        "current": headline["current"],
        "previous": headline["previous"],
        "change": headline["change"],
        "top_pages": queries.top_pages(start=period.start, end=period.end, limit=REPORT_ROWS),
        "sources": sources,
        "dashboard_url": dashboard_url,
        "settings_url": f"{settings.SITE_URL}{reverse('dashboard:settings')}",
    }


def report_subject(*, context: dict) -> str:
    visitors = context["current"]["visitors"]
    label = context["period"].label
    return f"{context['kind_label']} analytics report, {label}: {visitors:,} visitors"


def report_message(*, context: dict, to: str) -> EmailMultiAlternatives:
    """The email: a plain-text body and an HTML alternative, both from templates (escaped)."""
    message = EmailMultiAlternatives(
        subject=report_subject(context=context),
        body=render_to_string("dashboard/email/report.txt", context),
        to=[to],
    )
    html = render_to_string("dashboard/email/report.html", context)
    message.attach_alternative(html, "text/html")
    return message


@dataclass(frozen=True)
class DueReport:
    user_id: int
    username: str
    email: str
    period: ReportPeriod


@dataclass
class ReportOutcome:
    sent: int = 0
    failed: int = 0  # refused: retried
    unknown: int = 0  # possibly delivered: not retried
    skipped: int = 0
    periods: list[ReportPeriod] = field(default_factory=list)


def rollups_cover(*, end: dt.datetime) -> bool:
    """True when no raw page view before ``end`` waits above the aggregation watermark.

    A quiet site's watermark may not move for hours, so its age says nothing; what is left to
    aggregate does (an index range on the newest ids).
    """
    return not Visit.objects.filter(id__gt=visits_watermark(), visited_at__lt=end).exists()


def reports_due(*, now: dt.datetime) -> list[DueReport]:
    """Every report that has not been settled for the last complete period of each kind.

    A subscriber gets the periods that ended after they subscribed; a FAILED delivery with
    attempts left is due again; a period is due only once aggregation has gone past its end.
    """
    due = []
    for kind in ReportKind.values:
        period = report_period(kind=kind, now=now)
        if not rollups_cover(end=period.end):
            continue
        settled = ReportDelivery.objects.filter(
            user=OuterRef("user"), kind=kind, period_start=period.first_day
        ).exclude(status=Status.FAILED, attempts__lt=MAX_ATTEMPTS)
        subscriptions = (
            ReportSubscription.objects.filter(
                kind=kind, created_at__lt=period.end, user__is_active=True, user__is_staff=True
            )
            .exclude(user__email="")
            .filter(~Exists(settled))
            .values_list("user_id", "user__" + get_user_model().USERNAME_FIELD, "user__email")
            .order_by("user_id")
        )
        due.extend(
            DueReport(user_id=user_id, username=username, email=email, period=period)
            for user_id, username, email in subscriptions
        )
    return due


def delivery_claim(*, user_id: int, period: ReportPeriod, now: dt.datetime) -> bool:
    """Claim one report for sending; True for exactly one caller per report and attempt."""
    with transaction.atomic():
        _, created = ReportDelivery.objects.get_or_create(
            user_id=user_id,
            kind=period.kind,
            period_start=period.first_day,
            defaults={"status": Status.SENDING, "claimed_at": now},
        )
    if created:
        return True
    # A refused attempt is claimed again by whoever flips it from FAILED first.
    return bool(
        ReportDelivery.objects.filter(
            user_id=user_id,
            kind=period.kind,
            period_start=period.first_day,
            status=Status.FAILED,
            attempts__lt=MAX_ATTEMPTS,
        ).update(status=Status.SENDING, attempts=F("attempts") + 1, claimed_at=now)
    )


def _delivery_settle(report: DueReport, *, status: str, error: str = "") -> None:
    sent_at = timezone.now() if status == Status.SENT else None
    ReportDelivery.objects.filter(
        user_id=report.user_id, kind=report.period.kind, period_start=report.period.first_day
    ).update(status=status, error=error[:1000], sent_at=sent_at)


def report_send(*, report: DueReport, context: dict, now: dt.datetime) -> str:
    """Claim and send one report; return its status (or "skipped" when claimed elsewhere)."""
    # Rendered before the claim: a template error must not leave a claimed report unsent.
    message = report_message(context=context, to=report.email)
    if not delivery_claim(user_id=report.user_id, period=report.period, now=now):
        return "skipped"
    connection = get_connection(fail_silently=False)
    try:
        connection.open()
    except (OSError, smtplib.SMTPException) as error:
        return _failed(report, error, status=Status.FAILED)
    try:
        connection.send_messages([message])
    except SMTP_REFUSALS as error:
        return _failed(report, error, status=Status.FAILED)
    except (OSError, smtplib.SMTPException) as error:
        return _failed(report, error, status=Status.UNKNOWN)
    else:
        _delivery_settle(report, status=Status.SENT)
        period, user_id = report.period, report.user_id
        logger.info("Sent the %s report for %s to user %s", period.kind, period.first_day, user_id)
        return Status.SENT
    finally:
        try:
            connection.close()
        except (OSError, smtplib.SMTPException):
            logger.warning("Closing the SMTP connection failed", exc_info=True)


def _failed(report: DueReport, error: Exception, *, status: str) -> str:
    _delivery_settle(report, status=status, error=f"{type(error).__name__}: {error}")
    retry = "will be retried" if status == Status.FAILED else "not retried: it may have arrived"
    logger.error(
        "The %s report for %s to user %s was not sent (%s): %s",
        report.period.kind,
        report.period.first_day,
        report.user_id,
        retry,
        error,
    )
    return status


def reports_send_due(*, now: dt.datetime) -> ReportOutcome:
    """Send every due report once; the figures of each period are computed once."""
    outcome = ReportOutcome()
    contexts: dict[ReportPeriod, dict] = {}
    for report in reports_due(now=now):
        if report.period not in contexts:
            contexts[report.period] = report_context(period=report.period)
            outcome.periods.append(report.period)
        status = report_send(report=report, context=contexts[report.period], now=now)
        if status == Status.SENT:
            outcome.sent += 1
        elif status == Status.FAILED:
            outcome.failed += 1
        elif status == Status.UNKNOWN:
            outcome.unknown += 1
        else:
            outcome.skipped += 1
    return outcome


def subscriptions_set(*, user, email: str, kinds: list[str]) -> None:
    """Subscribe ``user`` to exactly ``kinds``; a kept subscription keeps its start date."""
    with transaction.atomic():
        if email and email != user.email:
            user.email = email
            user.save(update_fields=["email"])
        ReportSubscription.objects.filter(user=user).exclude(kind__in=kinds).delete()
        ReportSubscription.objects.bulk_create(
            [ReportSubscription(user=user, kind=kind) for kind in kinds], ignore_conflicts=True
        )
