"""Delete old, already aggregated raw visits by hand, as the ``prune_raw_visits`` task does."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tracker import retention


class Command(BaseCommand):
    help = "Delete raw visits older than TRACKER_RAW_RETENTION_DAYS that are already aggregated."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=retention.DEFAULT_PRUNE_BATCH)

    def handle(self, *args, batch_size: int, **options):
        count = retention.raw_visits_prune(batch_size=batch_size)
        events = retention.raw_events_prune(batch_size=batch_size)
        self.stdout.write(f"Pruned {count} raw visits.")
        self.stdout.write(f"Pruned {events} raw events.")
