"""Write realistic synthetic raw visits, for demos and benchmarks."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from tracker.goals import goals_demo_create
from tracker.traffic import traffic_generate


class Command(BaseCommand):
    help = "Generate --sessions synthetic sessions over the last --days days (seeded)."

    def add_arguments(self, parser):
        parser.add_argument("--sessions", type=int, default=1000)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--demo-goals",
            action="store_true",
            help="Also create a few goals matching the generated events and pages, if none exist.",
        )

    def handle(
        self, *args, sessions: int, days: int, seed: int, demo_goals: bool, verbosity: int, **kw
    ):
        if sessions < 0 or days < 1:
            raise CommandError("--sessions must be >= 0 and --days >= 1")
        started = time.perf_counter()
        count = traffic_generate(sessions=sessions, days=days, seed=seed, progress=verbosity > 0)
        elapsed = time.perf_counter() - started
        rate = count / elapsed if elapsed else 0.0
        self.stdout.write(
            f"Wrote {count} visits of {sessions} sessions in {elapsed:.2f} s ({rate:,.0f} rows/s)."
        )
        if demo_goals:
            self.stdout.write(f"Created {goals_demo_create()} demo goals.")
