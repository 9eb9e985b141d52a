"""Load scenario: real gunicorn + Celery, many visitors, then every count compared exactly.

Run as ``python -m reliability.scenario_load --config postgres|sqlite ...``; prints one JSON line.
It creates its own database (PostgreSQL: a fresh ``reliability_load`` database; SQLite: a file in a
temporary folder), its own redis-server, and stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

from reliability import processes
from reliability.load import LoadResult, drive

POSTGRES_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DATABASE_NAME = "reliability_load"


def drop_postgres_database(name: str, *, admin_url: str = POSTGRES_ADMIN_URL) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def recreate_postgres_database(name: str, *, admin_url: str = POSTGRES_ADMIN_URL) -> str:
    """Create a fresh database ``name`` on the server of ``admin_url``; return its URL."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


class FaultSchedule(threading.Thread):
    """Run each action once the load's progress (0..1) reaches its fraction; bounded in time."""

    def __init__(self, progress: list[float], actions: list[tuple[float, str, object]]) -> None:
        super().__init__(daemon=True)
        self.progress, self.actions = progress, actions
        self.log: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 900
        for fraction, name, action in self.actions:
            while self.progress[0] < fraction and time.monotonic() < deadline:
                time.sleep(0.05)
            action()
            self.log.append(f"{name} at {self.progress[0]:.0%}")
        self.done.set()


def drain_and_aggregate() -> None:
    """Drain the Redis buffer until empty, then aggregate everything new."""
    from django.db import connections

    from tracker.buffer import drain_buffered_visits
    from tracker.event_rollups import events_aggregate
    from tracker.rollups import visits_aggregate

    connections.close_all()  # this process's connection may predate a PostgreSQL restart
    for _ in range(1000):
        if drain_buffered_visits(reclaim_idle_ms=0) == 0:
            break
    visits_aggregate()
    events_aggregate()


def verify(result: LoadResult, logs: list[Path]) -> dict:
    """Compare what was sent with what was stored and shown; scan for leaked session keys."""
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection
    from django.db.models import Count
    from django.test import Client

    from tracker.models import Event, TrackedSession, Visit
    from tracker.recording import TRACKING_ID_SESSION_KEY

    served_visits = Visit.objects.filter(status_code__lt=500)
    served_per_session = dict(
        served_visits.values("tracking_id").annotate(n=Count("id")).values_list("tracking_id", "n")
    )
    summaries = dict(TrackedSession.objects.values_list("tracking_id", "pageviews"))
    events_per_session = dict(
        Event.objects.filter(name="cookie_tested")
        .values("tracking_id")
        .annotate(n=Count("id"))
        .values_list("tracking_id", "n")
    )
    mismatched_sessions = 0
    mismatched_event_sessions = 0
    for visitor in result.visitors:
        tracking_id = _uuid(
            SessionStore(session_key=visitor.session_key).get(TRACKING_ID_SESSION_KEY)
        )
        served = served_per_session.get(tracking_id, 0)
        summarised = summaries.get(tracking_id, 0)
        # Every page served is recorded once; a server error may or may not be (its session
        # could not always be read while the database was down).
        if served != visitor.served or not visitor.served <= summarised <= visitor.page_views:
            mismatched_sessions += 1
        # Each about page that said the cookie worked recorded its event once; a 5xx may have.
        events = events_per_session.get(tracking_id, 0)
        if not visitor.events_served <= events <= visitor.events_served + visitor.events_maybe:
            mismatched_event_sessions += 1

    staff = get_user_model().objects.create_user("reliability-staff", is_staff=True)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(staff)
    stats_response = client.get("/dashboard/api/stats.json", {"range": "24h"})
    stats = stats_response.json() if stats_response.status_code == 200 else {}

    keys = [visitor.session_key for visitor in result.visitors if visitor.session_key]
    haystacks = {
        "logs": "\n".join(path.read_text(errors="replace") for path in logs if path.exists())
    }
    with connection.cursor() as cursor:
        for model in (Visit, TrackedSession):
            table = connection.ops.quote_name(model._meta.db_table)
            columns = " || ' ' || ".join(
                f"COALESCE(CAST({connection.ops.quote_name(f.column)} AS TEXT), '')"
                for f in model._meta.concrete_fields
            )
            cursor.execute(f"SELECT {columns} FROM {table}")  # noqa: S608 - our own table names
            haystacks[model._meta.db_table] = "\n".join(row[0] for row in cursor.fetchall())
    for url in [
        "/dashboard/?range=24h",
        "/dashboard/export/sessions.csv?range=24h",
        "/dashboard/export/pages.csv?range=24h",
        "/dashboard/api/stats.json?range=24h",
    ]:
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        haystacks[url] = body.decode(errors="replace")
    leaks = sorted({where for where, text in haystacks.items() for key in keys if key in text})

    return {
        "sent": result.sent,
        "page_views": result.page_views,
        "served": result.served,
        "recorded_served": served_visits.count(),
        "server_errors": result.server_errors,
        "failed": sum(n for status, n in result.statuses.items() if status >= 400),
        "transport_errors": sum(result.errors.values()),
        "statuses": {str(status): n for status, n in sorted(result.statuses.items())},
        "visitors": len(result.visitors),
        "raw_visits": Visit.objects.count(),
        "tracked_sessions": TrackedSession.objects.count(),
        "mismatched_sessions": mismatched_sessions,
        "events_served": sum(visitor.events_served for visitor in result.visitors),
        "events_recorded": Event.objects.count(),
        "mismatched_event_sessions": mismatched_event_sessions,
        "dashboard_events": sum(row["count"] for row in stats.get("events", [])),
        "dashboard_sessions": stats.get("sessions"),
        "dashboard_pageviews": stats.get("pageviews"),
        "session_keys_checked": len(keys),
        "leaks": leaks,
        "seconds": round(result.seconds, 1),
        "req_per_s": round(result.sent / result.seconds) if result.seconds else 0,
    }


def _uuid(value):
    import uuid

    return uuid.UUID(value) if value else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", choices=["postgres", "sqlite"], required=True)
    parser.add_argument("--visitors", type=int, default=1000)
    parser.add_argument("--views", type=int, default=50, help="page views per visitor")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--redis-outage", action="store_true")
    parser.add_argument(
        "--postgres-restart", action="store_true", help="restart our own PostgreSQL mid-load"
    )
    parser.add_argument(
        "--sink",
        choices=["redis", "direct"],
        default="redis",
        help="with --config postgres: the Redis buffer, or PostgreSQL's pipeline sink alone",
    )
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix=f"reliability-{options.config}-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SESSION_ENGINE", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    env.update(
        DEBUG="1",
        VAR_DIR=str(workdir / "var"),
        SECRET_KEY=secrets.token_urlsafe(50),
        SESSION_ENGINE="db",
        LOG_LEVEL="WARNING",
    )
    # A database of this run's own, so two runs (say CI and a developer) never share one.
    database = f"{DATABASE_NAME}_{os.getpid()}"
    redis = cluster = None
    try:
        if options.postgres_restart:
            cluster = processes.PostgresCluster(
                port=processes.free_port(), data_dir=workdir / "pg", log=workdir / "pg.log"
            )
            cluster.create()
            env["DATABASE_URL"] = recreate_postgres_database(database, admin_url=cluster.url)
        elif options.config == "postgres":
            env["DATABASE_URL"] = recreate_postgres_database(database)
        if options.config == "postgres" and options.sink == "redis":
            redis = processes.RedisProcess(
                port=processes.free_port(), data_dir=workdir / "redis", log=workdir / "redis.log"
            )
            redis.start()
            env["REDIS_URL"] = redis.url
        os.environ.clear()
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "analytics_site.settings"
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)

        started: list = []
        logs = [workdir / "gunicorn.log", workdir / "worker.log", workdir / "beat.log"]
        try:
            port = processes.free_port()
            started.append(
                processes.gunicorn(env=env, port=port, workers=options.workers, log=logs[0])
            )
            if redis is not None:
                started.append(
                    processes.celery("worker", env=env, log=logs[1], extra=["--concurrency", "1"])
                )
                started.append(
                    processes.celery(
                        "beat",
                        env=env,
                        log=logs[2],
                        extra=["--schedule", str(workdir / "beat-schedule")],
                    )
                )
            progress = [0.0]
            faults = []
            if options.redis_outage and redis is not None:
                faults += [(0.3, "redis stopped", redis.stop), (0.6, "redis started", redis.start)]
            worker_log_at_fault = [0]
            if cluster is not None:

                def restart_postgres() -> None:
                    worker_log_at_fault[0] = logs[1].stat().st_size if logs[1].exists() else 0
                    cluster.restart()

                faults += [(0.4, "postgres restarted", restart_postgres)]
            schedule = FaultSchedule(progress, faults)
            schedule.start()
            result = drive(
                f"http://127.0.0.1:{port}",
                visitors=options.visitors,
                views_per_visitor=options.views,
                concurrency=options.concurrency,
                on_progress=lambda fraction: progress.__setitem__(0, fraction),
            )
            schedule.done.wait(timeout=60)
            if cluster is not None and redis is not None:
                # The worker must get over the restart by itself: a drain succeeds after it.
                processes.wait_until(
                    lambda: (
                        "succeeded"
                        in logs[1].read_bytes()[worker_log_at_fault[0] :].decode(errors="replace")
                    ),
                    timeout=60,
                    what="the worker to run a task after the PostgreSQL restart",
                )
        finally:
            for process in reversed(started):
                processes.stop(process)
        drain_and_aggregate()
        summary = verify(result, logs)
        summary["config"] = options.config
        summary["faults"] = schedule.log
        # A PostgreSQL restart may fail the requests in flight: at most one per gunicorn worker.
        summary["allowed_failures"] = options.workers if cluster is not None else 0
    finally:
        if redis is not None:
            redis.stop()
        if cluster is not None:
            from django.db import connections

            connections.close_all()
            cluster.stop()
        elif options.config == "postgres":
            drop_postgres_database(database)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
