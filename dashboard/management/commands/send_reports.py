"""Send the due email reports now, as the hourly beat does; --dry-run only lists them."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dashboard import reports


class Command(BaseCommand):
    help = (
        "Send each due email report (last complete week or month) once. --dry-run prints what"
        " would go out and neither sends nor claims anything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="print, send nothing")

    def handle(self, *args, dry_run: bool, **options):
        now = timezone.now()
        if dry_run:
            due = reports.reports_due(now=now)
            for report in due:
                self.stdout.write(
                    f"would send the {report.period.kind} report for {report.period.label}"
                    f" ({report.period.first_day} to {report.period.last_day}) to"
                    f" {report.email} (user {report.username})"
                )
            self.stdout.write(f"{len(due)} report(s) due; dry run: nothing sent.")
            return
        outcome = reports.reports_send_due(now=now)
        summary = (
            f"{outcome.sent} sent, {outcome.failed} refused (retried by the next run),"
            f" {outcome.unknown} possibly delivered (not retried), {outcome.skipped} already"
            " claimed elsewhere."
        )
        if outcome.failed or outcome.unknown:
            raise CommandError(summary)
        self.stdout.write(summary)
