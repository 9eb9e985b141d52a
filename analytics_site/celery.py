"""The Celery app: configuration from Django settings (``CELERY_*``) and the beat schedule."""

from __future__ import annotations

import os

from celery import Celery

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

# The one place where periodic work is scheduled; each period says why.
app.conf.beat_schedule = {}


@app.task(name="analytics_site.ping")
def ping() -> str:
    """Answer a round-trip, so operators and tests can see a worker is consuming."""
    return "pong"
