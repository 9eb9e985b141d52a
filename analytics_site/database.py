"""Ride out a short database outage (a PostgreSQL restart) instead of failing every request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 0.5
Connection = TypeVar("Connection")


def connect_retrying(
    connect: Callable[[], Connection], *, timeout: float, retry_on: type[Exception]
) -> Connection:
    """Return ``connect()``, retrying with a growing pause for up to ``timeout`` seconds.

    While the server restarts, connecting fails for a second or two: a request that needs a
    new connection then (its old one was broken by the restart) waits instead of failing.
    """
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY_SECONDS
    while True:
        try:
            return connect()
        except retry_on as error:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.error("database unreachable for %.1f s: %s", timeout, error)
                raise
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_DELAY_SECONDS)
