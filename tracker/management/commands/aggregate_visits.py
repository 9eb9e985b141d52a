"""Aggregate raw visits into the rollups by hand, as the ``aggregate_visits`` task does."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tracker import aggregation, event_rollups, goals, rollups


class Command(BaseCommand):
    help = "Aggregate new raw visits into the rollups (--rebuild recomputes them all)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="Recompute every rollup from the raw visits still stored.",
        )
        parser.add_argument("--batch-size", type=int, default=rollups.DEFAULT_BATCH_SIZE)

    def handle(self, *args, rebuild: bool, batch_size: int, **options):
        if rebuild:
            count = rollups.rollups_rebuild(batch_size=batch_size)
            events = event_rollups.event_rollups_rebuild()
            hits = goals.goal_hits_rebuild_all()
            self.stdout.write(f"Rebuilt the rollups from {count} raw visits.")
            self.stdout.write(f"Rebuilt the event rollups from {events} raw events.")
            self.stdout.write(f"Rebuilt {hits} goal hits from the raw rows still stored.")
        else:
            counts = aggregation.aggregation_run(batch_size=batch_size)
            self.stdout.write(f"Aggregated {counts.visits} new visits.")
            self.stdout.write(f"Aggregated {counts.events} new events.")
