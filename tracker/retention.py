"""Expired sessions and raw-visit pruning: what is kept, for how long, and why.

What aggregation derives (visitors, visits, the rollups) is kept forever; only Django's expired
sessions and raw page views that are both old and already aggregated are deleted.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.db import models
from django.db.models import Subquery
from django.utils import timezone

from tracker import event_rollups
from tracker.models import Event, TrackedSession, Visit
from tracker.rollups import visits_watermark

logger = logging.getLogger(__name__)

# These engines keep nothing server-side to clear: the cache expires its own keys, and a signed
# cookie carries its own expiry. Their clear_expired() is a documented no-op.
NO_OP_ENGINES = {
    "django.contrib.sessions.backends.cache",
    "django.contrib.sessions.backends.signed_cookies",
}
DEFAULT_PRUNE_BATCH = 10_000


def sessions_clear_expired() -> int:
    """Clear expired Django sessions, then mark tracked sessions ended; return how many ended.

    The tracker writes the tracking id into the session data when it creates the session, and
    keeps no session key, so the two are matched by time: a tracked session with no visit for
    ``SESSION_COOKIE_AGE`` has no Django session left (Django's expiry is at most that long after
    the last write). A later visit with the same tracking id reopens it (aggregation clears
    ``ended``). Its analytics are never deleted.
    """
    engine = settings.SESSION_ENGINE
    if engine in NO_OP_ENGINES:
        logger.info("session engine %s expires sessions itself: nothing to clear", engine)
    import_module(engine).SessionStore.clear_expired()

    cutoff = timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE)
    ended = TrackedSession.objects.filter(ended=False, last_seen__lt=cutoff).update(ended=True)
    logger.info("marked %d tracked sessions ended (no visit since %s)", ended, cutoff)
    return ended


def _aggregated_rows_prune(
    model: type[models.Model], *, time_field: str, watermark: int, batch_size: int
) -> int:
    """Delete ``model``'s rows past the raw retention at or below the aggregation watermark, in
    short batches: each its own short transaction, so neither the tracker's inserts nor
    aggregation wait long on the table. Returns how many rows were deleted."""
    cutoff = timezone.now() - timedelta(days=settings.TRACKER_RAW_RETENTION_DAYS)
    prunable = model.objects.filter(**{f"{time_field}__lt": cutoff}, id__lte=watermark)
    deleted_total = 0
    while True:
        batch = prunable.order_by("id").values("id")[:batch_size]
        deleted, _ = model.objects.filter(id__in=Subquery(batch)).delete()
        deleted_total += deleted
        if deleted < batch_size:
            break
    logger.info(
        "pruned %d raw %s rows before %s (aggregated up to id %d)",
        deleted_total,
        model._meta.model_name,
        cutoff,
        watermark,
    )
    return deleted_total


def raw_visits_prune(*, batch_size: int = DEFAULT_PRUNE_BATCH) -> int:
    """Delete raw visits past retention that are already aggregated; return how many."""
    return _aggregated_rows_prune(
        Visit, time_field="visited_at", watermark=visits_watermark(), batch_size=batch_size
    )


def raw_events_prune(*, batch_size: int = DEFAULT_PRUNE_BATCH) -> int:
    """Delete raw events past the raw retention that are already aggregated, as raw visits are;
    their rollups are kept. Returns how many events were deleted."""
    return _aggregated_rows_prune(
        Event,
        time_field="occurred_at",
        watermark=event_rollups.event_watermark(),
        batch_size=batch_size,
    )
