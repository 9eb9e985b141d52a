"""Fault scenarios around the Celery jobs, on a fresh PostgreSQL database and our own Redis.

- ``worker-sigkill``: generate ~N raw visits, let a real worker aggregate them, SIGKILL it (and its
  pool) mid-run, start a new worker, let it finish; the rollups must equal a rebuild from raw rows.
- ``two-beats``: two beat processes and a worker for some minutes while visits keep arriving; the
  rollups must equal a rebuild from raw rows (nothing counted twice).

Prints one JSON line; every process it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reliability import processes
from reliability.scenario_load import drop_postgres_database, recreate_postgres_database

DATABASE_NAME = "reliability_faults"
ROLLUP_ORDER = {
    "tracker_trackedsession": "tracking_id",
    "tracker_visitsummary": "tracking_id, number",
    "tracker_pagehourly": "hour, path",
    "tracker_visithourly": "hour, dimension, value",
    "tracker_pagedaily": "day, path",
    "tracker_visitdaily": "day, dimension, value",
    "tracker_visitorhourly": "hour, lag, previous_hour",
    "tracker_visitordaily": "day, lag, previous_hour",
    "tracker_pagevisitorhourly": "hour, path, previous_hour",
    "tracker_pagevisitordaily": "day, path, previous_hour",
    "tracker_eventhourly": "hour, name",
    "tracker_eventdaily": "day, name",
    "tracker_eventvisitorhourly": "hour, name, previous_hour",
    "tracker_eventvisitordaily": "day, name, previous_hour",
}
EVENT_NAMES = ["signup", "Outbound Link: Click", "File Download", "cookie_tested"]


def events_add(*, seed: int, after_visit_id: int = 0, share: float = 0.3) -> int:
    """Give a share of the raw visits after ``after_visit_id`` an event (the visitor's, on that
    page, a few seconds on), as the site would record them; return how many."""
    import random
    import uuid
    from datetime import timedelta

    from tracker.models import Event, Visit

    rng = random.Random(seed)
    visits = (
        Visit.objects.filter(id__gt=after_visit_id)
        .order_by("id")
        .values_list("tracking_id", "visited_at", "path")
    )
    batch, added = [], 0
    for tracking_id, visited_at, path in visits.iterator(chunk_size=5000):
        if rng.random() >= share:
            continue
        batch.append(
            Event(
                event_id=uuid.uuid4(),
                tracking_id=tracking_id,
                occurred_at=visited_at + timedelta(seconds=rng.randrange(1, 30)),
                name=rng.choice(EVENT_NAMES),
                path=path,
            )
        )
        if len(batch) == 5000:
            added += len(Event.objects.bulk_create(batch))
            batch = []
    return added + len(Event.objects.bulk_create(batch))


def rebuild_all() -> None:
    from tracker.event_rollups import event_rollups_rebuild
    from tracker.rollups import rollups_rebuild

    rollups_rebuild()
    event_rollups_rebuild()


def rollup_fingerprint() -> dict[str, str]:
    """A digest of every rollup table's full content, computed in the database."""
    from django.db import connection

    digests = {}
    with connection.cursor() as cursor:
        for table, order in ROLLUP_ORDER.items():
            columns = [
                field.column
                for field in _model(table)._meta.concrete_fields
                if field.column not in {"id", "ended"}
            ]
            row = " || '|' || ".join(f"COALESCE(CAST({c} AS TEXT), '')" for c in columns)
            # Our own table and column names, no input: nothing to inject.
            aggregate = f"md5(string_agg({row}, E'\\n' ORDER BY {order})), count(*)"
            cursor.execute(f"SELECT {aggregate} FROM {table}")  # noqa: S608
            digest, count = cursor.fetchone()
            digests[table] = f"{count}:{digest}"
    return digests


def _model(table: str):
    from django.apps import apps

    return next(m for m in apps.get_app_config("tracker").get_models() if m._meta.db_table == table)


def watermark() -> int:
    from tracker.models import AggregationState

    state = AggregationState.objects.filter(name="visits").first()
    return state.last_visit_id if state else 0


def max_visit_id() -> int:
    from django.db.models import Max

    from tracker.models import Visit

    return Visit.objects.aggregate(top=Max("id"))["top"] or 0


def start_worker(env: dict[str, str], log: Path, concurrency: int = 1) -> subprocess.Popen:
    """A worker in its own process group, so SIGKILL reaches its pool children too."""
    command = [
        str(processes.BIN / "celery"),
        "-A",
        "analytics_site",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
    ]
    return subprocess.Popen(
        command,
        cwd=processes.ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_group(process)


def worker_sigkill(env: dict[str, str], workdir: Path, visits: int) -> dict:
    from django.core.management import call_command

    from analytics_site.celery import app

    # The generator averages ~4.56 page views a visitor over 30 days (returns included).
    sessions = max(1, round(visits / 4.56))
    started = time.perf_counter()
    call_command("generate_traffic", sessions=sessions, days=30, seed=7, stdout=io.StringIO())
    generated = max_visit_id()
    events = events_add(seed=7)
    generate_seconds = time.perf_counter() - started
    log = workdir / "worker.log"

    worker = start_worker(env, log)
    try:
        app.send_task("tracker.tasks.aggregate_visits")
        processes.wait_until(
            lambda: "tracker.tasks.aggregate_visits" in log.read_text(errors="replace"),
            timeout=120,
            what="the worker to receive the aggregation",
        )
        time.sleep(1.5)  # well inside the run: aggregating 1M visits takes several seconds
    finally:
        kill_group(worker)
    watermark_at_kill = watermark()

    worker = start_worker(env, log)
    try:
        result = app.send_task("tracker.tasks.aggregate_visits")
        result.get(timeout=600)
        processes.wait_until(
            lambda: watermark() >= generated,
            timeout=600,
            what="the restarted worker to aggregate everything",
        )
    finally:
        stop_group(worker)
    after_restart = rollup_fingerprint()
    rebuild_all()
    undisturbed = rollup_fingerprint()
    ok = after_restart == undisturbed and watermark_at_kill < generated
    row_counts = ", ".join(
        f"{table}: {digest.split(':')[0]}" for table, digest in undisturbed.items()
    )
    return {
        "ok": ok,
        "detail": (
            f"{generated} raw visits and {events} events (generated in {generate_seconds:.1f}s); "
            "worker SIGKILLed with "
            f"watermark at {watermark_at_kill}; after restart rollups "
            f"{'equal' if after_restart == undisturbed else 'DIFFER from'} an undisturbed rebuild "
            f"({row_counts} rows)"
        ),
    }


def two_beats(env: dict[str, str], workdir: Path, minutes: float) -> dict:
    from django.core.management import call_command

    from tracker.event_rollups import events_aggregate
    from tracker.rollups import visits_aggregate

    worker = start_worker(env, workdir / "worker.log", concurrency=2)
    beats = [
        processes.celery(
            "beat",
            env=env,
            log=workdir / f"beat-{n}.log",
            extra=["--schedule", str(workdir / f"beat-{n}-schedule")],
        )
        for n in (1, 2)
    ]
    deadline = time.monotonic() + minutes * 60
    seed = 100
    try:
        while time.monotonic() < deadline:
            seed += 1
            before = max_visit_id()
            call_command("generate_traffic", sessions=200, days=1, seed=seed, stdout=io.StringIO())
            events_add(seed=seed, after_visit_id=before)
            time.sleep(10)
    finally:
        for beat in beats:
            processes.stop(beat)
        stop_group(worker)
    worker_log = (workdir / "worker.log").read_text(errors="replace")
    aggregations = worker_log.count("Task tracker.tasks.aggregate_visits[") // 2
    visits_aggregate()
    events_aggregate()
    after_beats = rollup_fingerprint()
    rebuild_all()
    rebuilt = rollup_fingerprint()
    ok = after_beats == rebuilt and aggregations >= 2
    return {
        "ok": ok,
        "detail": (
            f"two beats for {minutes:g} min, {max_visit_id()} visits arriving, {aggregations} "
            f"aggregation runs by the worker; rollups "
            f"{'equal' if after_beats == rebuilt else 'DIFFER from'} a rebuild from raw rows"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["worker-sigkill", "two-beats"])
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--minutes", type=float, default=3)
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix=f"reliability-{options.scenario}-"))
    redis = processes.RedisProcess(
        port=processes.free_port(), data_dir=workdir / "redis", log=workdir / "redis.log"
    )
    redis.start()
    database = f"{DATABASE_NAME}_{os.getpid()}"  # this run's own
    try:
        env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_ALLOW_ASYNC_UNSAFE"}}
        env.update(
            DEBUG="1",
            VAR_DIR=str(workdir / "var"),
            SECRET_KEY=secrets.token_urlsafe(50),
            DATABASE_URL=recreate_postgres_database(database),
            REDIS_URL=redis.url,
            LOG_LEVEL="INFO",
            DJANGO_SETTINGS_MODULE="analytics_site.settings",
        )
        os.environ.clear()
        os.environ.update(env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        if options.scenario == "worker-sigkill":
            summary = worker_sigkill(env, workdir, options.visits)
        else:
            summary = two_beats(env, workdir, options.minutes)
    finally:
        redis.stop()
        drop_postgres_database(database)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
