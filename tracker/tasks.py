"""Celery tasks: thin doors that take primitive arguments and call one function each.

Every task is safe to run twice; transient failures (a database or Redis hiccup) are retried.
"""

from __future__ import annotations

import redis
from celery import shared_task
from django.db import InterfaceError, OperationalError

from tracker import aggregation, funnel_runs, goals, retention
from tracker.buffer import drain_buffered_visits

# Connection errors to the database or the broker: worth retrying later with backoff.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError)


@shared_task(
    name="tracker.tasks.drain_visit_buffer",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    max_retries=5,
)
def drain_visit_buffer(max_batch: int = 5000) -> int:
    """Move visits buffered in Redis into the database; a re-run never double-counts."""
    return drain_buffered_visits(max_batch=max_batch)


@shared_task(
    name="tracker.tasks.aggregate_visits",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def aggregate_visits() -> int:
    """Fold the visits and events that arrived since the last run into the rollups; return
    how many visits."""
    return aggregation.aggregation_run().visits


@shared_task(
    name="tracker.tasks.clear_expired_sessions",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def clear_expired_sessions() -> int:
    """Clear expired Django sessions and mark their tracked sessions ended; return how many."""
    return retention.sessions_clear_expired()


@shared_task(
    name="tracker.tasks.prune_raw_visits",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def prune_raw_visits() -> int:
    """Delete raw visits (and events) past retention that are already aggregated; return how
    many visits."""
    visits = retention.raw_visits_prune()
    retention.raw_events_prune()
    return visits


@shared_task(
    name="tracker.tasks.rebuild_goal_hits",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def rebuild_goal_hits(goal_id: int) -> int:
    """Replace a new or changed goal's hits with those of the raw rows still stored."""
    return goals.goal_hits_rebuild(goal_id=goal_id)


@shared_task(
    name="tracker.tasks.rebuild_funnel_runs",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def rebuild_funnel_runs(funnel_id: int) -> int:
    """Rebuild a new or edited funnel's runs from the goal hits (a no-op once it is gone)."""
    return funnel_runs.funnel_runs_rebuild(funnel_ids=[funnel_id])
