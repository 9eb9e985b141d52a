"""Seeded random raw visits and rollups recomputed from them in plain Python, as test oracles."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from tracker.models import (
    PageDaily,
    PageHourly,
    SessionDaily,
    SessionHourly,
    TrackedSession,
    Visit,
)

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PATHS = ["/", "/about/", "/pricing/", "/blog/", "/blog/a/", "/blog/b/", "/docs/", "/contact/"]
REFERRERS = ["", "", "news.example.com", "search.example.org"]
UTM_SOURCES = ["", "", "newsletter", "twitter"]
BROWSERS = ["Chrome", "Firefox", "Safari", ""]
SYSTEMS = ["Linux", "Windows", "iOS", "Android"]
DEVICES = ["desktop", "mobile", "tablet", "other"]
SESSION_FIELDS = [
    "tracking_id",
    "first_seen",
    "last_seen",
    "pageviews",
    "duration_seconds",
    "entry_path",
    "exit_path",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "browser",
    "os",
    "device",
]
FIRST_TOUCH = SESSION_FIELDS[7:]


def random_visits(*, seed: int, sessions: int, start: datetime = START) -> list[Visit]:
    """Return unsaved visits of random sessions over a few hours, shuffled like late arrivals.

    Times include exact ties inside a session and sessions that cross hour boundaries.
    """
    rng = random.Random(seed)
    visits = []
    for _ in range(sessions):
        tracking_id = uuid.UUID(int=rng.getrandbits(128))
        moment = start + timedelta(
            seconds=rng.randrange(0, 5 * 3600), microseconds=rng.randrange(10**6)
        )
        for _ in range(1 + min(int(rng.expovariate(0.4)), 30)):
            visits.append(
                Visit(
                    event_id=uuid.UUID(int=rng.getrandbits(128)),
                    tracking_id=tracking_id,
                    visited_at=moment,
                    path=rng.choice(PATHS),
                    utm_source=rng.choice(UTM_SOURCES),
                    utm_medium=rng.choice(["", "email"]),
                    utm_campaign=rng.choice(["", "spring"]),
                    referrer_host=rng.choice(REFERRERS),
                    browser=rng.choice(BROWSERS),
                    os=rng.choice(SYSTEMS),
                    device=rng.choice(DEVICES),
                    status_code=200,
                    response_ms=rng.randrange(1, 500),
                )
            )
            if rng.random() < 0.8:  # otherwise the next visit ties on time
                moment += timedelta(
                    seconds=rng.randrange(1, 1500), microseconds=rng.randrange(10**6)
                )
    rng.shuffle(visits)
    return visits


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def pages_bucket(pageviews: int) -> str:
    if pageviews <= 3:
        return str(pageviews)
    for limit, bucket in ((5, "4-5"), (10, "6-10"), (20, "11-20")):
        if pageviews <= limit:
            return bucket
    return "21+"


def expected_rollups() -> dict[str, set[tuple]]:
    """Recompute every rollup from the raw rows in the database, row by row in Python."""
    by_session = defaultdict(list)
    pages = defaultdict(lambda: [0, set()])
    for visit in Visit.objects.order_by("id"):
        by_session[visit.tracking_id].append(visit)
        cell = pages[(hour_of(visit.visited_at), visit.path)]
        cell[0] += 1
        cell[1].add(visit.tracking_id)

    sessions = []
    for tracking_id, visits in by_session.items():
        first = min(visits, key=lambda v: (v.visited_at, v.id))
        last = max(visits, key=lambda v: (v.visited_at, v.id))
        sessions.append(
            (
                tracking_id,
                first.visited_at,
                last.visited_at,
                len(visits),
                (last.visited_at - first.visited_at) // timedelta(seconds=1),
                first.path,
                last.path,
                *(getattr(first, field) for field in FIRST_TOUCH),
            )
        )

    hourly = defaultdict(lambda: [0, 0, 0, 0])
    for row in sessions:
        summary = dict(zip(SESSION_FIELDS, row, strict=True))
        values = {"all": "", "pages": pages_bucket(summary["pageviews"])}
        for dimension in SessionHourly.Dimension.values:
            value = values.get(dimension, summary.get(dimension))
            cell = hourly[(hour_of(summary["first_seen"]), dimension, value)]
            cell[0] += 1
            cell[1] += summary["pageviews"]
            cell[2] += summary["pageviews"] == 1
            cell[3] += summary["duration_seconds"]

    page_daily = defaultdict(lambda: [0, 0])
    for (hour, path), (n, ids) in pages.items():
        cell = page_daily[(day_of(hour), path)]
        cell[0] += n
        cell[1] += len(ids)
    session_daily = defaultdict(lambda: [0, 0, 0, 0])
    for (hour, dimension, value), measures in hourly.items():
        cell = session_daily[(day_of(hour), dimension, value)]
        for index, measure in enumerate(measures):
            cell[index] += measure

    return {
        "sessions": set(sessions),
        "pages": {(hour, path, n, len(ids)) for (hour, path), (n, ids) in pages.items()},
        "hourly": {(*key, *cell) for key, cell in hourly.items()},
        "page_daily": {(*key, *cell) for key, cell in page_daily.items()},
        "session_daily": {(*key, *cell) for key, cell in session_daily.items()},
    }


def stored_rollups() -> dict[str, set[tuple]]:
    return {
        "sessions": set(TrackedSession.objects.values_list(*SESSION_FIELDS)),
        "pages": set(PageHourly.objects.values_list("hour", "path", "pageviews", "sessions")),
        "hourly": set(
            SessionHourly.objects.values_list(
                "hour", "dimension", "value", "sessions", "pageviews", "bounces", "duration_seconds"
            )
        ),
        "page_daily": set(PageDaily.objects.values_list("day", "path", "pageviews", "sessions")),
        "session_daily": set(
            SessionDaily.objects.values_list(
                "day", "dimension", "value", "sessions", "pageviews", "bounces", "duration_seconds"
            )
        ),
    }
