"""The Celery tasks, run by a real worker process against the broker this run is configured with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from celery import Celery
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone

from analytics_site.celery import app
from tests.tracker.rollup_reference import expected_rollups, random_visits, stored_rollups
from tracker import rollups
from tracker.models import TrackedSession, Visit

CELERY = Path(sys.executable).with_name("celery")
TASK_TIMEOUT = 90


def worker_database_url() -> str:
    """The URL of the database this test runs against, for the worker to use the same one."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """A Celery worker subprocess on its own queue, and a client app that sends to it."""

    def __init__(self, var_dir: Path) -> None:
        self.queue = f"tracker-tests-{uuid.uuid4().hex[:12]}"
        env = {
            **os.environ,
            "DEBUG": "1",
            "VAR_DIR": str(var_dir),
            "DATABASE_URL": worker_database_url(),
            "CONN_MAX_AGE": "0",
        }
        self.log = (var_dir / "worker.log").open("w")
        self.process = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "analytics_site",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--queues",
                self.queue,
                "--hostname",
                f"{self.queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client = self._client(var_dir)

    @staticmethod
    def _client(var_dir: Path) -> Celery:
        if settings.REDIS_URL:
            return Celery("tests", broker=settings.REDIS_URL, backend=settings.REDIS_URL)
        celery_dir = var_dir / "celery"
        for folder in ("queue", "processed", "results", "control"):
            (celery_dir / folder).mkdir(parents=True, exist_ok=True)
        return Celery(
            "tests",
            broker="filesystem://",
            backend=f"file://{celery_dir / 'results'}",
            broker_transport_options={
                "data_folder_in": str(celery_dir / "queue"),
                "data_folder_out": str(celery_dir / "queue"),
                "processed_folder": str(celery_dir / "processed"),
                "control_folder": str(celery_dir / "control"),
                "store_processed": False,
            },
        )

    def run(self, task_name: str):
        """Send the task as beat would (by name, JSON) and wait for the worker's result."""
        result = self.client.send_task(task_name, queue=self.queue, serializer="json")
        try:
            return result.get(timeout=TASK_TIMEOUT)
        except Exception:
            self.log.flush()
            print(Path(self.log.name).read_text())
            raise

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.client.close()
        self.log.close()


@pytest.fixture
def worker(tmp_path):
    running = Worker(tmp_path)
    yield running
    running.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
class CeleryWorkerTests:
    def test_worker_runs_each_task_results_in_database(self, worker, settings):
        # aggregate_visits: the worker's rollups equal the plain-Python reference.
        now = timezone.now()
        recent = now - timedelta(hours=6)
        Visit.objects.bulk_create(random_visits(seed=21, sessions=40, start=recent))
        assert worker.run("tracker.tasks.aggregate_visits") == Visit.objects.count()
        assert stored_rollups() == expected_rollups()

        # clear_expired_sessions: the expired Django session goes, the live one stays, and the
        # long-idle tracked session is marked ended.
        idle = uuid.uuid4()
        old_visit = random_visits(seed=22, sessions=1)[0]
        old_visit.tracking_id = idle
        old_visit.visited_at = now - timedelta(days=60)
        Visit.objects.bulk_create([old_visit])
        rollups.visits_aggregate()
        for expiry in (now - timedelta(minutes=1), 3600):
            store = SessionStore()
            store["tracking_id"] = str(uuid.uuid4())
            store.set_expiry(expiry)
            store.save()
        assert Session.objects.count() == 2
        assert worker.run("tracker.tasks.clear_expired_sessions") == 1
        assert Session.objects.count() == 1
        assert list(TrackedSession.objects.filter(ended=True).values_list("pk", flat=True)) == [
            idle
        ]

        # prune_raw_visits: the 60-day-old aggregated visit goes (default retention: 30 days).
        assert worker.run("tracker.tasks.prune_raw_visits") == 1
        assert not Visit.objects.filter(tracking_id=idle).exists()
        assert TrackedSession.objects.filter(pk=idle).exists()


class BeatScheduleTests:
    def test_beat_schedule_every_entry_names_a_registered_task(self):
        app.loader.import_default_modules()
        names = {entry["task"] for entry in app.conf.beat_schedule.values()}
        assert names >= {
            "tracker.tasks.aggregate_visits",
            "tracker.tasks.clear_expired_sessions",
            "tracker.tasks.prune_raw_visits",
        }
        assert names <= set(app.tasks)

    def test_tasks_retry_on_connection_errors(self):
        from django.db import InterfaceError, OperationalError

        app.loader.import_default_modules()
        for name in ("aggregate_visits", "clear_expired_sessions", "prune_raw_visits"):
            task = app.tasks[f"tracker.tasks.{name}"]
            assert {OperationalError, InterfaceError} <= set(task.autoretry_for)
            assert task.retry_backoff
