"""The Celery app: configuration from Django settings (``CELERY_*``) and the beat schedule."""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics_site.settings")

app = Celery("analytics_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # JSON only: a pickled message from a compromised broker would be code execution.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Our tasks are idempotent, so redeliver rather than lose work when a worker dies mid-task.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_soft_time_limit=240,
    task_time_limit=300,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    timezone="UTC",
)
app.autodiscover_tasks()

# The one place where periodic work is scheduled; each period says why. Each entry expires
# after its own period: if no worker consumes for a while, stale copies are dropped rather than
# run back to back (every run catches up on everything anyway).
app.conf.beat_schedule = {
    # Every 5 s: keeps the Redis buffer short, so little is lost if Redis dies and the "live"
    # figure stays fresh; a no-op without Redis.
    "drain-visit-buffer": {
        "task": "tracker.tasks.drain_visit_buffer",
        "schedule": 5.0,
        "options": {"expires": 5},
    },
    # Every minute: dashboards lag raw visits by at most about a minute, and each run stays
    # small (a minute of visits), far below the task's time limit.
    "aggregate-visits": {
        "task": "tracker.tasks.aggregate_visits",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Hourly: sessions live for days (SESSION_COOKIE_AGE), so an hour's delay in clearing them
    # is invisible, and the query stays rare.
    "clear-expired-sessions": {
        "task": "tracker.tasks.clear_expired_sessions",
        "schedule": crontab(minute=17),
        "options": {"expires": 3600},
    },
    # Daily: retention is counted in days (TRACKER_RAW_RETENTION_DAYS); one quiet-hour run
    # deletes a day's worth of old rows in short batches.
    "prune-raw-visits": {
        "task": "tracker.tasks.prune_raw_visits",
        "schedule": crontab(hour=3, minute=41),
        "options": {"expires": 24 * 3600},
    },
    # Hourly: a report goes out within the hour after its week or month ends (and after the
    # aggregation has gone past that end); a run finds nothing to do in every other hour, and a
    # missed or failed run is caught up by the next one. Claims make a second beat harmless.
    "send-reports": {
        "task": "dashboard.tasks.send_reports",
        "schedule": crontab(minute=23),
        "options": {"expires": 3600},
    },
}


@app.task(name="analytics_site.ping")
def ping() -> str:
    """Answer a round-trip, so operators and tests can see a worker is consuming."""
    return "pong"
