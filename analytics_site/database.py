"""Ride out a short database outage (a PostgreSQL restart) instead of failing every request."""

from __future__ import annotations

import logging
import time

from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 0.5


def database_wait_until_available(*, connection: BaseDatabaseWrapper, timeout: float) -> bool:
    """Return True once ``connection`` is usable, retrying for up to ``timeout`` seconds.

    A persistent connection broken by a restart is found by Django's health check and reopened;
    while the server is down, connecting is retried with a growing pause. False means the
    database is still unreachable: the caller goes on and fails as it would have.
    """
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY_SECONDS
    while True:
        try:
            connection.close_if_health_check_failed()
            connection.ensure_connection()
            return True
        except OperationalError as error:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.error(
                    "database %s unreachable for %.1f s: %s", connection.alias, timeout, error
                )
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_DELAY_SECONDS)
