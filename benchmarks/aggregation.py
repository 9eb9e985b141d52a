"""Aggregation on PostgreSQL: 1M new raw visits into all rollups, an incremental run, memory.

Works in its own database (``analytics_bench_aggregation``, dropped and recreated), so it never
touches another one. Each step runs in a fresh subprocess with ``DATABASE_URL`` pointing there,
so peak memory is that of the aggregating process alone.

    python -m benchmarks aggregation          # BENCH_TOTAL_VISITS=5000000 by default
    BENCH_TOTAL_VISITS=2000000 BENCH_KEEP=1 python -m benchmarks aggregation
    BENCH_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres python -m benchmarks aggregation
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DATABASE = "analytics_bench_aggregation"
MEAN_PAGES = 4.56  # generate_traffic's page views per visitor (all its visits) over 30 days
FIRST_VISITS = 1_000_000
TOTAL_VISITS = int(os.environ.get("BENCH_TOTAL_VISITS", "5000000"))
INCREMENT_VISITS = 10_000
KEEP = os.environ.get("BENCH_KEEP") == "1"  # keep the database afterwards, to look into plans
ROOT = Path(__file__).resolve().parent.parent

REFERENCES = {
    "hourly per path, distinct sessions": """
        CREATE TEMP TABLE reference_pages AS
        SELECT date_trunc('hour', visited_at, 'UTC') AS hour, path, count(*) AS pageviews,
            count(DISTINCT tracking_id) AS sessions
        FROM tracker_visit GROUP BY 1, 2""",
    "per-session summaries": """
        CREATE TEMP TABLE reference_sessions AS
        SELECT tracking_id, min(visited_at) AS first_seen, max(visited_at) AS last_seen,
            count(*) AS pageviews
        FROM tracker_visit GROUP BY 1""",
}


def main() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DATABASE}"
    with tempfile.TemporaryDirectory(prefix="bench-aggregation-") as var_dir:
        env = {**os.environ, "DATABASE_URL": url, "VAR_DIR": var_dir, "DEBUG": "1"}
        env.pop("REDIS_URL", None)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )

        def step(name: str, **arguments) -> dict:
            command = [sys.executable, "-m", "benchmarks.aggregation", name, json.dumps(arguments)]
            output = subprocess.run(
                command, cwd=ROOT, env=env, check=True, capture_output=True, text=True
            ).stdout
            return json.loads(output.strip().splitlines()[-1])

        generated = step("generate", visits=FIRST_VISITS, days=7, seed=1)
        references = step("reference")
        first = step("aggregate")
        rows = [
            (
                f"generate_traffic ({generated['rows']:,} rows, COPY)",
                f"{generated['rows'] / generated['seconds']:,.0f} rows/s",
                ">= 200,000 rows/s",
            ),
            (
                f"aggregate {first['visits']:,} new visits into all rollups",
                f"{first['seconds']:.2f} s ({first['visits'] / first['seconds']:,.0f} rows/s)",
                "<= 5 s",
            ),
            *(
                (f"  reference, one statement: {name}", f"{seconds:.2f} s", "")
                for name, seconds in references.items()
            ),
            ("peak RSS of the aggregating process", f"{first['peak_rss_mb']:.0f} MB", "<= 150 MB"),
        ]
        print_table(rows, partial=True)

        if first["visits"] < TOTAL_VISITS:
            more = step("generate", visits=TOTAL_VISITS - first["visits"], days=30, seed=2)
            catch_up = step("aggregate")
            step("generate", visits=INCREMENT_VISITS, days=1, seed=3)
            increment = step("aggregate")
            total = first["visits"] + more["rows"] + increment["visits"]
            rows += [
                (
                    f"aggregate {catch_up['visits']:,} more visits (catch-up)",
                    f"{catch_up['seconds']:.2f} s, peak RSS {catch_up['peak_rss_mb']:.0f} MB",
                    "",
                ),
                (
                    f"incremental: {increment['visits']:,} new on {total - increment['visits']:,}",
                    f"{increment['seconds']:.3f} s",
                    "<= 1 s",
                ),
            ]
    if not KEEP:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    print()
    print_table(rows)


def print_table(rows: list[tuple[str, str, str]], partial: bool = False) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    headers = ("measure", "result", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, headers, strict=True)]
    lines = [headers, tuple("-" * w for w in widths), *rows]
    for line in lines:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("| " + " | ".join(cells) + " |", flush=True)
    if partial:
        print("(incremental run follows)\n", flush=True)


def run_step(name: str, arguments: dict) -> dict:
    """Run one measured step inside Django, in this (fresh) process."""
    import resource

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics_site.settings")
    django.setup()
    from django.db import connection

    from tracker import rollups
    from tracker.traffic import traffic_generate

    started = time.perf_counter()
    if name == "generate":
        # Short windows drop the returns that would fall after their end, so fewer page views
        # per visitor than MEAN_PAGES: top up (another seed) until the target is reached.
        rows = 0
        for attempt in range(4):
            missing = arguments["visits"] - rows
            if missing <= arguments["visits"] // 100:
                break
            rows += traffic_generate(
                sessions=max(1, round(missing / MEAN_PAGES)),
                days=arguments["days"],
                seed=arguments["seed"] * 100 + attempt,
                progress=False,
            )
        return {"rows": rows, "seconds": time.perf_counter() - started}
    if name == "aggregate":
        visits = rollups.visits_aggregate()
        seconds = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"visits": visits, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}
    if name == "reference":
        timings = {}
        with connection.cursor() as cursor:
            cursor.execute("SET work_mem = '64MB'")
            cursor.execute("SET jit = off")
            for label, statement in REFERENCES.items():
                started = time.perf_counter()
                cursor.execute(statement)
                timings[label] = time.perf_counter() - started
        return timings
    raise SystemExit(f"unknown step {name!r}")


if __name__ == "__main__":
    print(json.dumps(run_step(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})))
