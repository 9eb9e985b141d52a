"""Seeded random raw page views, and visits and rollups recomputed from them in plain Python,
as test oracles.

The reference splits visits by walking each visitor's page views in order, as the definition
reads; aggregation does it with window functions in SQL.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.conf import settings

from tests.dashboard.reference import RefVisit, split_visits
from tracker.models import (
    VISITOR_LAGS,
    CountryVisitorDaily,
    CountryVisitorHourly,
    PageDaily,
    PageHourly,
    PagePath,
    PageVisitorDaily,
    PageVisitorHourly,
    TrackedSession,
    Visit,
    VisitDaily,
    VisitHourly,
    VisitorDaily,
    VisitorHourly,
    VisitSummary,
)

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PATHS = ["/", "/about/", "/pricing/", "/blog/", "/blog/a/", "/blog/b/", "/docs/", "/contact/"]
REFERRERS = ["", "", "", "", "news.example.com", "search.example.org"]
UTM_SOURCES = ["", "", "", "", "", "newsletter", "twitter"]
BROWSERS = ["Chrome", "Firefox", "Safari", ""]
SYSTEMS = ["Linux", "Windows", "iOS", "Android"]
DEVICES = ["desktop", "mobile", "tablet", "other"]
COUNTRIES = ["", "GB", "GB", "US", "DE"]
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
    "country",
    "visits",
]
FIRST_TOUCH = SESSION_FIELDS[7:15]
SOURCE = ["referrer_host", "utm_source", "utm_medium", "utm_campaign"]
VISIT_FIELDS = [
    "tracking_id",
    "number",
    "first_pageview_id",
    "started_at",
    "ended_at",
    "pageviews",
    "duration_seconds",
    "entry_path",
    "exit_path",
    *FIRST_TOUCH,
]
MEASURES = ["visits", "pageviews", "bounces", "duration_seconds", "returning_visits"]


def _gap(rng: random.Random, timeout: int) -> timedelta:
    """A pause between two page views of a visitor, with the shapes that break sessionizing."""
    roll = rng.random()
    if roll < 0.2:
        return timedelta(0)  # a tie on time
    if roll < 0.3:
        return timedelta(seconds=timeout)  # exactly the timeout: same visit
    if roll < 0.35:
        return timedelta(seconds=timeout, microseconds=1)  # just over: a new visit
    if roll < 0.4:
        return timedelta(seconds=timeout - 1, microseconds=999_999)
    if roll < 0.5:
        return timedelta(hours=rng.randrange(1, 72), seconds=rng.randrange(3600))  # returns
    return timedelta(seconds=rng.randrange(1, timeout), microseconds=rng.randrange(10**6))


def random_visits(
    *, seed: int, sessions: int, start: datetime = START, hours: int = 5
) -> list[Visit]:
    """Return unsaved page views of random visitors, shuffled like late arrivals.

    Gaps include exact ties, pauses exactly at, just under and just over the timeout, and
    returns hours or days later; about one page view in five announces a source, often another
    one than its visit's. Visits cross hour, midnight and daylight-saving boundaries when
    ``start`` is near one.
    """
    timeout = settings.TRACKER_VISIT_TIMEOUT
    rng = random.Random(seed)
    visits = []
    for _ in range(sessions):
        tracking_id = uuid.UUID(int=rng.getrandbits(128))
        moment = start + timedelta(
            seconds=rng.randrange(0, hours * 3600), microseconds=rng.randrange(10**6)
        )
        for _ in range(1 + min(int(rng.expovariate(0.4)), 30)):
            visits.append(
                Visit(
                    event_id=uuid.UUID(int=rng.getrandbits(128)),
                    tracking_id=tracking_id,
                    visited_at=moment,
                    path=rng.choice(PATHS),
                    utm_source=rng.choice(UTM_SOURCES),
                    utm_medium=rng.choice(["", "", "", "", "email"]),
                    utm_campaign=rng.choice(["", "", "", "", "spring"]),
                    referrer_host=rng.choice(REFERRERS),
                    browser=rng.choice(BROWSERS),
                    os=rng.choice(SYSTEMS),
                    device=rng.choice(DEVICES),
                    country=rng.choice(COUNTRIES),
                    status_code=200,
                    response_ms=rng.randrange(1, 500),
                )
            )
            moment += _gap(rng, timeout)
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


def reference_visits(page_views: list[Visit], *, timeout: int | None = None) -> list[RefVisit]:
    """Split page views into visits as the README defines them, one page view at a time."""
    limit = settings.TRACKER_VISIT_TIMEOUT if timeout is None else timeout
    return split_visits(page_views, timeout=limit)


def visit_row(visit: RefVisit) -> tuple:
    """The visit as VisitSummary stores it, in VISIT_FIELDS order."""
    return (
        visit.tracking_id,
        visit.number,
        visit.views[0].id,
        *visit.row(VISIT_FIELDS[3:]).values(),
    )


def expected_rollups() -> dict[str, set[tuple]]:
    """Recompute every rollup from the raw rows in the database, row by row in Python."""
    page_views = list(Visit.objects.order_by("id"))
    by_session = defaultdict(list)
    pages = defaultdict(lambda: [0, set()])
    for view in page_views:
        by_session[view.tracking_id].append(view)
        cell = pages[(hour_of(view.visited_at), view.path)]
        cell[0] += 1
        cell[1].add(view.tracking_id)
    visits = reference_visits(page_views)
    visit_count = defaultdict(int)
    for visit in visits:
        visit_count[visit.tracking_id] += 1

    sessions = []
    for tracking_id, views in by_session.items():
        first = min(views, key=lambda v: (v.visited_at, v.id))
        last = max(views, key=lambda v: (v.visited_at, v.id))
        sessions.append(
            (
                tracking_id,
                first.visited_at,
                last.visited_at,
                len(views),
                (last.visited_at - first.visited_at) // timedelta(seconds=1),
                first.path,
                last.path,
                *(getattr(first, name) for name in FIRST_TOUCH),
                visit_count[tracking_id],
            )
        )

    hourly = defaultdict(lambda: [0, 0, 0, 0, 0])
    for visit in visits:
        summary = dict(zip(VISIT_FIELDS, visit_row(visit), strict=True))
        values = {"all": "", "pages": pages_bucket(summary["pageviews"])}
        for dimension in VisitHourly.Dimension.values:
            value = values.get(dimension, summary.get(dimension))
            cell = hourly[(hour_of(summary["started_at"]), dimension, value)]
            cell[0] += 1
            cell[1] += summary["pageviews"]
            cell[2] += summary["pageviews"] == 1
            cell[3] += summary["duration_seconds"]
            cell[4] += summary["number"] > 1

    numbered = {(visit.tracking_id, visit.number): visit for visit in visits}
    lags = defaultdict(int)
    for visit in visits:
        for lag in VISITOR_LAGS:
            earlier = numbered.get((visit.tracking_id, visit.number - lag))
            if earlier:
                lags[(hour_of(visit.started_at), lag, hour_of(earlier.started_at))] += 1
    lag_daily = defaultdict(int)
    for (hour, lag, previous), count in lags.items():
        lag_daily[(day_of(hour), lag, previous)] += count

    latest_from = {}  # (visitor, country) -> its latest visit so far
    country_repeats = defaultdict(int)
    for visit in sorted(visits, key=lambda visit: (visit.tracking_id, visit.number)):
        country = visit.views[0].country
        earlier = latest_from.get((visit.tracking_id, country))
        if earlier:
            country_repeats[(hour_of(visit.started_at), country, hour_of(earlier.started_at))] += 1
        latest_from[(visit.tracking_id, country)] = visit
    country_repeats_daily = defaultdict(int)
    for (hour, country, previous), count in country_repeats.items():
        country_repeats_daily[(day_of(hour), country, previous)] += count

    hours_viewed = defaultdict(set)
    for view in page_views:
        hours_viewed[(view.tracking_id, view.path)].add(hour_of(view.visited_at))
    page_repeats = defaultdict(int)
    for (_, path), hours in hours_viewed.items():
        ordered = sorted(hours)
        for previous, hour in itertools.pairwise(ordered):
            page_repeats[(hour, path, previous)] += 1
    page_repeats_daily = defaultdict(int)
    for (hour, path, previous), count in page_repeats.items():
        page_repeats_daily[(day_of(hour), path, previous)] += count

    page_daily = defaultdict(lambda: [0, 0])
    for (hour, path), (n, ids) in pages.items():
        cell = page_daily[(day_of(hour), path)]
        cell[0] += n
        cell[1] += len(ids)
    visit_daily = defaultdict(lambda: [0, 0, 0, 0, 0])
    for (hour, dimension, value), measures in hourly.items():
        cell = visit_daily[(day_of(hour), dimension, value)]
        for index, measure in enumerate(measures):
            cell[index] += measure

    return {
        # Each visit's pages in the order viewed, what journeys read.
        "visit_pages": {
            (visit.tracking_id, visit.number, tuple(view.path for view in visit.views))
            for visit in visits
        },
        "sessions": set(sessions),
        "visits": {visit_row(visit) for visit in visits},
        "pages": {(hour, path, n, len(ids)) for (hour, path), (n, ids) in pages.items()},
        "hourly": {(*key, *cell) for key, cell in hourly.items()},
        "page_daily": {(*key, *cell) for key, cell in page_daily.items()},
        "visit_daily": {(*key, *cell) for key, cell in visit_daily.items()},
        "visitor_hourly": {(*key, count) for key, count in lags.items()},
        "visitor_daily": {(*key, count) for key, count in lag_daily.items()},
        "page_visitor_hourly": {(*key, count) for key, count in page_repeats.items()},
        "page_visitor_daily": {(*key, count) for key, count in page_repeats_daily.items()},
        "country_visitor_hourly": {(*key, count) for key, count in country_repeats.items()},
        "country_visitor_daily": {(*key, count) for key, count in country_repeats_daily.items()},
    }


def stored_rollups() -> dict[str, set[tuple]]:
    lag_fields = ["lag", "previous_hour", "visits"]
    paths = dict(PagePath.objects.values_list("id", "path"))
    return {
        "visit_pages": {
            (tracking_id, number, tuple(paths[page] for page in pages))
            for tracking_id, number, pages in VisitSummary.objects.values_list(
                "tracking_id", "number", "pages"
            )
        },
        "sessions": set(TrackedSession.objects.values_list(*SESSION_FIELDS)),
        "visits": set(VisitSummary.objects.values_list(*VISIT_FIELDS)),
        "pages": set(PageHourly.objects.values_list("hour", "path", "pageviews", "sessions")),
        "hourly": set(VisitHourly.objects.values_list("hour", "dimension", "value", *MEASURES)),
        "page_daily": set(PageDaily.objects.values_list("day", "path", "pageviews", "sessions")),
        "visit_daily": set(VisitDaily.objects.values_list("day", "dimension", "value", *MEASURES)),
        "visitor_hourly": set(VisitorHourly.objects.values_list("hour", *lag_fields)),
        "visitor_daily": set(VisitorDaily.objects.values_list("day", *lag_fields)),
        "page_visitor_hourly": set(
            PageVisitorHourly.objects.values_list("hour", "path", "previous_hour", "visitors")
        ),
        "page_visitor_daily": set(
            PageVisitorDaily.objects.values_list("day", "path", "previous_hour", "visitors")
        ),
        "country_visitor_hourly": set(
            CountryVisitorHourly.objects.values_list("hour", "country", "previous_hour", "visitors")
        ),
        "country_visitor_daily": set(
            CountryVisitorDaily.objects.values_list("day", "country", "previous_hour", "visitors")
        ),
    }
