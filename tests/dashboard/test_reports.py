"""Email reports: the period, the figures against the plain-Python reference, sending once.

Sending goes through Django's test outbox, and through a real SMTP server (aiosmtpd) started by
the test for the SMTP backend, its refusals and the Celery task's retry.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
import threading
from io import StringIO

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection

from dashboard import reports
from dashboard.models import ReportDelivery, ReportKind, ReportSubscription
from dashboard.tasks import send_reports
from dashboard.templatetags.dashboard_format import change_text, duration, number, percent
from tests.dashboard import reference
from tests.dashboard.conftest import XSS_PATH, known_visits
from tests.tracker.test_tasks import Worker
from tracker.rollups import visits_aggregate

pytestmark = pytest.mark.django_db

UTC = dt.UTC
# A Tuesday: the last complete week is Mon 5 - Sun 11 Jan 2026 (the known data's 8-11 Jan).
NOW = dt.datetime(2026, 1, 13, 9, 23, tzinfo=UTC)
WEEK = reports.ReportPeriod(ReportKind.WEEKLY, dt.date(2026, 1, 5), dt.date(2026, 1, 11))
SITE_URL = "https://stats.example.org"
Status = ReportDelivery.Status


def staff_user(name: str, *, email: str, kinds: list[str], since: dt.datetime | None = None):
    user = get_user_model().objects.create_user(name, email=email, is_staff=True)
    ReportSubscription.objects.bulk_create(
        [
            ReportSubscription(user=user, kind=kind, created_at=since or NOW - dt.timedelta(30))
            for kind in kinds
        ]
    )
    return user


@pytest.fixture(autouse=True)
def site_url(settings):
    settings.SITE_URL = SITE_URL


def expected_week() -> dict:
    """The week's figures from the raw visits, in plain Python (tests/dashboard/reference.py)."""
    views = known_visits()
    visits = reference.split_visits(views, timeout=1800)
    start, end = WEEK.start, WEEK.end
    return {
        "current": reference.headline(visits, views, start=start, end=end),
        "previous": reference.headline(visits, views, start=start - (end - start), end=start),
        "pages": sorted(
            reference.top_pages(views, start=start, end=end).values(),
            key=lambda row: (-row["pageviews"], row["path"]),
        ),
        "sources": reference.breakdown(visits, start=start, end=end, dimension="referrer_host"),
    }


def parts(message) -> tuple[str, str]:
    """The plain-text body and the HTML alternative of an EmailMultiAlternatives."""
    (html, mimetype), = message.alternatives
    assert mimetype == "text/html"
    return message.body, html


class ReportPeriodTests:
    @pytest.mark.parametrize(
        ("now", "kind", "first", "last"),
        [
            (NOW, "weekly", dt.date(2026, 1, 5), dt.date(2026, 1, 11)),
            (dt.datetime(2026, 1, 12, 0, 0, tzinfo=UTC), "weekly", dt.date(2026, 1, 5), None),
            (dt.datetime(2026, 1, 11, 23, 59, tzinfo=UTC), "weekly", dt.date(2025, 12, 29), None),
            (NOW, "monthly", dt.date(2025, 12, 1), dt.date(2025, 12, 31)),
            (dt.datetime(2026, 3, 1, 0, 30, tzinfo=UTC), "monthly", dt.date(2026, 2, 1), None),
        ],
    )
    def test_report_period_last_complete(self, now, kind, first, last):
        period = reports.report_period(kind=kind, now=now)
        assert period.first_day == first
        if last:
            assert period.last_day == last
        assert period.end <= now
        assert period.first_day.weekday() == 0 if kind == "weekly" else period.first_day.day == 1

    def test_report_period_local_midnights(self, settings):
        settings.TIME_ZONE = "Europe/Berlin"
        period = reports.report_period(kind="weekly", now=NOW)
        assert period.start == dt.datetime(2026, 1, 4, 23, 0, tzinfo=UTC)
        assert period.end == dt.datetime(2026, 1, 11, 23, 0, tzinfo=UTC)


class ReportRenderTests:
    def test_report_with_data_matches_reference(self, known_data):
        expected = expected_week()
        context = reports.report_context(period=WEEK)
        message = reports.report_message(context=context, to="owner@example.org")
        text, html = parts(message)
        current, previous = expected["current"], expected["previous"]
        assert current["visits"] == 7 and previous["visits"] == 0  # the data set is as we think

        assert message.to == ["owner@example.org"]
        assert message.subject == (
            f"Weekly analytics report, 5 Jan to 11 Jan 2026: {current['visitors']} visitors"
        )
        for label, value, change in [
            ("Visitors", number(current["visitors"]), None),
            ("Visits", number(current["visits"]), None),
            ("Pageviews", number(current["pageviews"]), None),
            ("Bounce rate", percent(current["bounce_rate"]), None),
            ("Avg. visit duration", duration(current["avg_visit_seconds"]), None),
        ]:
            assert f"{label:<23}{value} ({change_text(change)})" in text
        assert f'data-figure="visitors">{current["visitors"]}<' in html
        assert f'data-figure="pageviews">{current["pageviews"]}<' in html
        assert f'data-figure="bounce_rate">{percent(current["bounce_rate"])}<' in html

        for row in expected["pages"][: reports.REPORT_ROWS]:
            assert f"  {row['pageviews']}  {row['visitors']}  {row['path']}\n" in text
        top = expected["pages"][0]
        assert f"<td style=\"padding:4px 6px;word-break:break-all;\">{top['path']}</td>" in html
        for value, row in expected["sources"].items():
            assert f"  {row['visits']}  {value or '(direct)'}\n" in text

        link = f"{SITE_URL}/dashboard/?start=2026-01-05&amp;end=2026-01-11"
        assert f'href="{link}"' in html
        assert f"{SITE_URL}/dashboard/?start=2026-01-05&end=2026-01-11" in text
        assert f"{SITE_URL}/dashboard/settings/" in text

    def test_report_change_against_previous_period(self, known_data):
        # The week of 12-18 Jan against 5-11 Jan: S5's one visit against seven.
        period = reports.ReportPeriod("weekly", dt.date(2026, 1, 12), dt.date(2026, 1, 18))
        views = known_visits()
        visits = reference.split_visits(views, timeout=1800)
        now_figures = reference.headline(visits, views, start=period.start, end=period.end)
        was = reference.headline(visits, views, start=WEEK.start, end=WEEK.end)
        text, _ = parts(
            reports.report_message(context=reports.report_context(period=period), to="a@b.example")
        )
        change = (now_figures["visits"] - was["visits"]) / was["visits"]
        assert f"Visits                 {now_figures['visits']} ({change_text(change)})" in text
        assert change_text(change) == "\N{MINUS SIGN}86%"

    def test_report_escapes_visitor_strings(self, known_data):
        _, html = parts(
            reports.report_message(context=reports.report_context(period=WEEK), to="a@b.example")
        )
        assert XSS_PATH not in html and "<b>evil</b>" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "&lt;b&gt;evil&lt;/b&gt;.example" in html

    def test_report_empty_period(self, db):
        period = reports.ReportPeriod("monthly", dt.date(2026, 3, 1), dt.date(2026, 3, 31))
        message = reports.report_message(
            context=reports.report_context(period=period), to="a@b.example"
        )
        text, html = parts(message)
        assert message.subject == "Monthly analytics report, March 2026: 0 visitors"
        assert "Visitors               0 (±0%)" in text
        assert "Bounce rate            — (n/a)" in text
        assert "No pageviews in this period." in text and "No visits in this period." in text
        assert "No pageviews in this period." in html
        assert f"{SITE_URL}/dashboard/?start=2026-03-01&amp;end=2026-03-31" in html


@pytest.fixture
def subscribers(known_data):
    """Two subscribers (one to both kinds), a staff user without a subscription, a non-staff one."""
    both = staff_user("both", email="both@example.org", kinds=["weekly", "monthly"])
    weekly = staff_user("weekly", email="weekly@example.org", kinds=["weekly"])
    staff_user("none", email="none@example.org", kinds=[])
    member = get_user_model().objects.create_user("member", email="member@example.org")
    ReportSubscription.objects.create(user=member, kind="weekly", created_at=NOW - dt.timedelta(9))
    return both, weekly


class ReportSendingTests:
    def test_two_runs_send_one_email_per_report(self, subscribers):
        first = reports.reports_send_due(now=NOW)
        second = reports.reports_send_due(now=NOW + dt.timedelta(hours=1))
        assert (first.sent, first.failed) == (3, 0)
        assert (second.sent, second.skipped) == (0, 0)
        sent = sorted((message.to[0], message.subject.split(" ")[0]) for message in mail.outbox)
        assert sent == [
            ("both@example.org", "Monthly"),
            ("both@example.org", "Weekly"),
            ("weekly@example.org", "Weekly"),
        ]
        assert set(ReportDelivery.objects.values_list("status", flat=True)) == {Status.SENT}

    @pytest.mark.django_db(transaction=True)
    def test_two_beats_at_once_send_one_email_per_report(self, subscribers):
        """Two runs in two threads (two connections) released together: one email per report."""
        barrier = threading.Barrier(4)
        outcomes = []

        def beat() -> None:
            try:
                barrier.wait()
                outcomes.append(reports.reports_send_due(now=NOW))
            finally:
                connection.close()

        threads = [threading.Thread(target=beat) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(outcome.sent for outcome in outcomes) == 3
        assert sum(outcome.failed + outcome.unknown for outcome in outcomes) == 0
        sent = sorted((message.to[0], message.subject.split(" ")[0]) for message in mail.outbox)
        assert sent == [
            ("both@example.org", "Monthly"),
            ("both@example.org", "Weekly"),
            ("weekly@example.org", "Weekly"),
        ]

    def test_claim_taken_sends_nothing(self, subscribers):
        # What a second beat finds when the first has claimed the report but not yet sent it.
        both, _ = subscribers
        assert reports.delivery_claim(user_id=both.pk, period=WEEK, now=NOW)
        assert not reports.delivery_claim(user_id=both.pk, period=WEEK, now=NOW)
        due = {(report.username, report.period.kind) for report in reports.reports_due(now=NOW)}
        assert due == {("both", "monthly"), ("weekly", "weekly")}
        context = reports.report_context(period=WEEK)
        due_report = reports.DueReport(both.pk, "both", "both@example.org", WEEK)
        assert reports.report_send(report=due_report, context=context, now=NOW) == "skipped"
        assert mail.outbox == []

    def test_unsubscribed_user_gets_none(self, subscribers, client):
        _, weekly = subscribers
        client.force_login(weekly)
        response = client.post("/dashboard/settings/reports/", {"email": "weekly@example.org"})
        assert response.status_code == 302
        assert not ReportSubscription.objects.filter(user=weekly).exists()
        assert reports.reports_send_due(now=NOW).sent == 2
        assert {message.to[0] for message in mail.outbox} == {"both@example.org"}

    def test_subscribed_after_period_gets_next_one(self, known_data):
        staff_user("late", email="late@example.org", kinds=["weekly"], since=NOW)
        assert reports.reports_send_due(now=NOW).sent == 0
        assert reports.reports_due(now=NOW + dt.timedelta(days=7))[0].email == "late@example.org"

    def test_waits_for_aggregation_past_period_end(self, subscribers):
        # A page view of the week not aggregated yet: the weekly reports wait for it.
        known_visits()[1].save()  # a fresh copy of S1's first page view, on 10 Jan
        due = reports.reports_due(now=NOW)
        assert {report.period.kind for report in due} == {"monthly"}
        visits_aggregate()
        assert len(reports.reports_due(now=NOW)) == 3

    def test_site_without_traffic_gets_empty_reports(self, db):
        staff_user("quiet", email="quiet@example.org", kinds=["monthly"])
        assert reports.reports_send_due(now=NOW).sent == 1
        assert mail.outbox[0].subject == "Monthly analytics report, December 2025: 0 visitors"

    def test_dry_run_sends_and_claims_nothing(self, subscribers, settings):
        # The command reads the clock: at any real date, last week and month are past the data.
        out = StringIO()
        call_command("send_reports", "--dry-run", stdout=out)
        lines = out.getvalue().splitlines()
        assert sum("would send the weekly report" in line for line in lines) == 2
        assert sum("to both@example.org (user both)" in line for line in lines) == 2
        assert lines[-1] == "3 report(s) due; dry run: nothing sent."
        assert mail.outbox == [] and not ReportDelivery.objects.exists()
        out = StringIO()
        call_command("send_reports", stdout=out)
        assert out.getvalue().startswith("3 sent, 0 refused")
        assert len(mail.outbox) == 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and refuses the first ``refusals`` DATA."""

    def __init__(self, refusals: int = 0) -> None:
        self.refusals = refusals
        self.refused = 0
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refused < self.refusals:
            self.refused += 1
            return "451 4.3.0 Mailbox busy, try again later"
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


def smtp_controller(mailbox: Mailbox) -> Controller:
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller


@pytest.fixture
def smtp_server(settings):
    """Start a real SMTP server on a free local port and point the SMTP backend at it."""
    started = []

    def start(mailbox: Mailbox) -> Mailbox:
        controller = smtp_controller(mailbox)
        started.append(controller)
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_TIMEOUT = 10
        return mailbox

    yield start
    for controller in started:
        controller.stop()


class ReportSmtpTests:
    def test_report_through_real_smtp_server(self, subscribers, smtp_server):
        mailbox = smtp_server(Mailbox())
        assert reports.reports_send_due(now=NOW).sent == 3
        assert reports.reports_send_due(now=NOW).sent == 0
        assert len(mailbox.messages) == 3
        weekly = next(m for m in mailbox.messages if m["To"] == "weekly@example.org")
        assert weekly.get_content_type() == "multipart/alternative"
        text = weekly.get_body(preferencelist=("plain",)).get_content()
        html = weekly.get_body(preferencelist=("html",)).get_content()
        assert weekly["Subject"].startswith("Weekly analytics report, 5 Jan to 11 Jan 2026")
        assert "Visits                 7 (n/a)" in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in html

    def test_refused_send_retried_by_celery_then_sent_once(
        self, subscribers, smtp_server, caplog
    ):
        _, weekly = subscribers
        ReportSubscription.objects.exclude(user=weekly).delete()
        mailbox = smtp_server(Mailbox(refusals=2))
        # The first attempt is refused, logged and recorded; nothing reached the mailbox.
        assert reports.reports_send_due(now=NOW).failed == 1
        (record,) = [r for r in caplog.records if r.name == "dashboard.reports"]
        assert record.levelname == "ERROR"
        assert "was not sent (will be retried)" in record.getMessage()
        assert "451" in record.getMessage()
        delivery = ReportDelivery.objects.get()
        assert (delivery.status, delivery.attempts) == (Status.FAILED, 1)
        assert "451" in delivery.error and mailbox.messages == []
        # The task retries (eagerly here: Celery runs the retry inline) until the server accepts.
        result = send_reports.apply(kwargs={"at": NOW.isoformat()})
        assert result.successful() and result.get() == 1
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (Status.SENT, 3)
        assert mailbox.refused == 2 and len(mailbox.messages) == 1
        assert send_reports.apply(kwargs={"at": NOW.isoformat()}).get() == 0
        assert len(mailbox.messages) == 1

    def test_refusals_stop_after_max_attempts(self, subscribers, smtp_server):
        _, weekly = subscribers
        ReportSubscription.objects.exclude(user=weekly).delete()
        mailbox = smtp_server(Mailbox(refusals=reports.MAX_ATTEMPTS + 1))
        for _ in range(reports.MAX_ATTEMPTS + 2):
            reports.reports_send_due(now=NOW)
        delivery = ReportDelivery.objects.get()
        assert (delivery.status, delivery.attempts) == (Status.FAILED, reports.MAX_ATTEMPTS)
        assert mailbox.refused == reports.MAX_ATTEMPTS and mailbox.messages == []

    def test_no_server_is_a_refusal(self, subscribers, settings):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
        outcome = reports.reports_send_due(now=NOW)
        assert (outcome.sent, outcome.failed) == (0, 3)
        assert set(ReportDelivery.objects.values_list("status", flat=True)) == {Status.FAILED}

    @pytest.mark.slow
    @pytest.mark.django_db(transaction=True)
    def test_celery_worker_sends_through_email_url(self, subscribers, tmp_path, monkeypatch):
        """A real worker, configured by EMAIL_URL alone, runs the task as beat sends it."""
        mailbox = Mailbox()
        controller = smtp_controller(mailbox)
        sender = "reports@example.org"
        url = f"smtp://127.0.0.1:{controller.port}/?_default_from_email={sender}"
        monkeypatch.setenv("EMAIL_URL", url)
        worker = Worker(tmp_path)
        try:
            assert worker.run("dashboard.tasks.send_reports") == 3
            assert worker.run("dashboard.tasks.send_reports") == 0
        finally:
            worker.stop()
            controller.stop()
        assert sorted(message["To"] for message in mailbox.messages) == [
            "both@example.org",
            "both@example.org",
            "weekly@example.org",
        ]
        assert {message["From"] for message in mailbox.messages} == {sender}

    def test_command_fails_when_a_report_is_refused(self, subscribers, settings):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
        with pytest.raises(CommandError, match="0 sent, 3 refused"):
            call_command("send_reports", stdout=StringIO())
