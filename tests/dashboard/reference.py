"""The dashboard's figures recomputed in plain Python from raw page views: the tests' oracle.

Written from the metric definitions, not from the queries or the aggregation: page views are
split into visits here again, one loop over each visitor's page views, and every figure is
counted from those visits (or from the page views themselves), never from a rollup.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from tracker.models import Visit

SOURCE_FIELDS = ("referrer_host", "utm_source", "utm_medium", "utm_campaign")
FIRST_TOUCH = (*SOURCE_FIELDS, "browser", "os", "device", "country")
PAGES = ["/", "/about/", "/pricing/", "/blog/", "/blog/a/", "/docs/", "/signup/"]
SOURCES = [
    ("", "", "", ""),
    ("", "", "", ""),
    ("news.example.com", "", "", ""),
    ("search.example.org", "", "", ""),
    ("", "newsletter", "email", "spring"),
    ("news.example.com", "twitter", "social", ""),
]
AGENTS = [
    ("Chrome", "Linux", "desktop"),
    ("Firefox", "Windows", "desktop"),
    ("Mobile Safari", "iOS", "mobile"),
    ("Chrome", "Android", "tablet"),
    ("", "", "other"),
]


def pages_bucket(pageviews: int) -> str:
    for highest, bucket in ((1, "1"), (2, "2"), (3, "3"), (5, "4-5"), (10, "6-10"), (20, "11-20")):
        if pageviews <= highest:
            return bucket
    return "21+"


def visits_bucket(visits: int) -> str:
    for highest, bucket in ((1, "1"), (2, "2"), (3, "3"), (5, "4-5"), (10, "6-10")):
        if visits <= highest:
            return bucket
    return "11+"


PAGES_BUCKETS = ["1", "2", "3", "4-5", "6-10", "11-20", "21+"]
VISITS_BUCKETS = ["1", "2", "3", "4-5", "6-10", "11+"]


# What a visit has of its own; its other fields are its first page view's.
OWN_FIELDS = {
    "tracking_id",
    "number",
    "started_at",
    "ended_at",
    "pageviews",
    "duration_seconds",
    "entry_path",
    "exit_path",
}


@dataclass
class RefVisit:
    tracking_id: uuid.UUID
    number: int
    views: list[Visit] = field(default_factory=list)

    @property
    def started_at(self) -> dt.datetime:
        return self.views[0].visited_at

    @property
    def ended_at(self) -> dt.datetime:
        return self.views[-1].visited_at

    @property
    def pageviews(self) -> int:
        return len(self.views)

    @property
    def duration_seconds(self) -> int:
        return (self.ended_at - self.started_at) // dt.timedelta(seconds=1)

    @property
    def entry_path(self) -> str:
        return self.views[0].path

    @property
    def exit_path(self) -> str:
        return self.views[-1].path

    def value(self, dimension: str) -> str:
        if dimension == "pages":
            return pages_bucket(self.pageviews)
        if dimension == "all":
            return ""
        if dimension in ("entry_path", "exit_path"):
            return getattr(self, dimension)
        return getattr(self.views[0], dimension)

    def row(self, fields: list[str]) -> dict:
        """The visit as the per-visit table holds it, in ``fields``."""
        return {
            name: getattr(self, name) if name in OWN_FIELDS else getattr(self.views[0], name)
            for name in fields
        }


def _announced(view: Visit) -> tuple[str, ...] | None:
    source = tuple(getattr(view, name) for name in SOURCE_FIELDS)
    return source if any(source) else None


def split_visits(views: list[Visit], *, timeout: int) -> list[RefVisit]:
    """Every visitor's page views (by time, then id) cut into numbered visits.

    A page view starts a visit when it is its visitor's first, comes more than ``timeout``
    seconds after the previous one, or announces a source (referrer or UTM tags) other than the
    last one announced since the visit's start (a direct start announces none).
    """
    by_visitor: dict[uuid.UUID, list[Visit]] = defaultdict(list)
    for view in views:
        by_visitor[view.tracking_id].append(view)
    limit = dt.timedelta(seconds=timeout)
    visits = []
    for tracking_id, own in by_visitor.items():
        own.sort(key=lambda view: (view.visited_at, view.id))
        current: RefVisit | None = None
        source = None
        previous = None
        number = 0
        for view in own:
            announced = _announced(view)
            if previous is None or view.visited_at - previous.visited_at > limit:
                starts, source = True, announced
            elif announced is not None:
                starts, source = announced != source, announced
            else:
                starts = False
            if starts:
                number += 1
                current = RefVisit(tracking_id, number)
                visits.append(current)
            current.views.append(view)
            previous = view
    return visits


def in_range(visits, *, start, end, path=None) -> list[RefVisit]:
    return [
        visit
        for visit in visits
        if start <= visit.started_at < end and (not path or visit.entry_path == path)
    ]


def headline(visits, views, *, start, end, path=None) -> dict:
    """One period's headline figures, as headline_totals names them."""
    chosen = in_range(visits, start=start, end=end, path=path)
    count = len(chosen)
    visit_pageviews = sum(visit.pageviews for visit in chosen)
    if path:
        pageviews = sum(1 for view in views if view.path == path and start <= view.visited_at < end)
    else:
        pageviews = visit_pageviews
    bounces = sum(1 for visit in chosen if visit.pageviews == 1)
    returning = sum(1 for visit in chosen if visit.number > 1)
    duration = sum(visit.duration_seconds for visit in chosen)
    return {
        "visitors": len({visit.tracking_id for visit in chosen}),
        "visits": count,
        "pageviews": pageviews,
        "returning_visits": returning,
        "views_per_visit": round(visit_pageviews / count, 2) if count else None,
        "bounce_rate": round(bounces / count, 4) if count else None,
        "avg_visit_seconds": round(duration / count, 1) if count else None,
        "returning_share": round(returning / count, 4) if count else None,
    }


def pages_per_visit(visits, *, start, end) -> list[dict]:
    counts = Counter(pages_bucket(v.pageviews) for v in in_range(visits, start=start, end=end))
    return [{"bucket": bucket, "visits": counts[bucket]} for bucket in PAGES_BUCKETS]


def visits_per_visitor(visits, *, start, end) -> list[dict]:
    made = Counter(visit.tracking_id for visit in in_range(visits, start=start, end=end))
    counts = Counter(visits_bucket(number) for number in made.values())
    return [{"bucket": bucket, "visitors": counts[bucket]} for bucket in VISITS_BUCKETS]


def _hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def series(visits, views, *, start, end, path=None, hourly: bool, zone: str) -> list[dict]:
    """Pageviews, visits and distinct visitors per UTC hour, or per day of ``zone``."""
    local = ZoneInfo(zone)

    def bucket(moment: dt.datetime) -> dt.datetime:
        if hourly:
            return _hour(moment)
        return dt.datetime.combine(moment.astimezone(local).date(), dt.time(), tzinfo=local)

    if hourly:
        buckets = []
        moment = start
        while moment < end:
            buckets.append(moment)
            moment += dt.timedelta(hours=1)
    else:
        first = start.astimezone(local).date()
        last = (end - dt.timedelta(microseconds=1)).astimezone(local).date()
        buckets = [
            dt.datetime.combine(first + dt.timedelta(days=n), dt.time(), tzinfo=local)
            for n in range((last - first).days + 1)
        ]
    chosen = in_range(visits, start=start, end=end, path=path)
    visit_counts = Counter(bucket(visit.started_at) for visit in chosen)
    people = defaultdict(set)
    for visit in chosen:
        people[bucket(visit.started_at)].add(visit.tracking_id)
    if path:
        pageviews = Counter(
            bucket(view.visited_at)
            for view in views
            if view.path == path and start <= view.visited_at < end
        )
    else:
        pageviews = Counter()
        for visit in chosen:
            pageviews[bucket(visit.started_at)] += visit.pageviews
    return [
        {
            "t": moment,
            "pageviews": pageviews[moment],
            "visits": visit_counts[moment],
            "visitors": len(people[moment]),
        }
        for moment in buckets
    ]


def top_pages(views, *, start, end, path=None) -> dict[str, dict]:
    """Per path: its views in the range and the distinct visitors who made them."""
    pageviews = Counter()
    people = defaultdict(set)
    for view in views:
        if start <= view.visited_at < end and (not path or view.path == path):
            pageviews[view.path] += 1
            people[view.path].add(view.tracking_id)
    return {
        page: {"path": page, "pageviews": count, "visitors": len(people[page])}
        for page, count in pageviews.items()
    }


def breakdown(visits, *, start, end, dimension: str, path=None) -> dict[str, dict]:
    """Per value of a visit dimension: the visits started in the range and their measures."""
    cells = defaultdict(list)
    for visit in in_range(visits, start=start, end=end):
        value = visit.value(dimension)
        if path and dimension == "entry_path" and value != path:
            continue
        cells[value].append(visit)
    result = {}
    for value, chosen in cells.items():
        count = len(chosen)
        result[value] = {
            "value": value,
            "visits": count,
            "pageviews": sum(visit.pageviews for visit in chosen),
            "returning_visits": sum(1 for visit in chosen if visit.number > 1),
            "bounce_rate": sum(1 for visit in chosen if visit.pageviews == 1) / count,
            "avg_visit_seconds": sum(visit.duration_seconds for visit in chosen) / count,
        }
    return result


def countries(visits, *, start, end) -> dict[str, dict]:
    """Per country: the visits started in the range, their measures and distinct visitors."""
    rows = breakdown(visits, start=start, end=end, dimension="country")
    people = defaultdict(set)
    for visit in in_range(visits, start=start, end=end):
        people[visit.value("country")].add(visit.tracking_id)
    return {
        country: {
            "country": country,
            "visitors": len(people[country]),
            **{key: row[key] for key in ("visits", "pageviews", "bounce_rate")},
        }
        for country, row in rows.items()
    }


def visitors(visits) -> dict[uuid.UUID, dict]:
    """Each visitor's summary over all their visits: what the visitors table shows."""
    by_visitor = defaultdict(list)
    for visit in visits:
        by_visitor[visit.tracking_id].append(visit)
    summaries = {}
    for tracking_id, own in by_visitor.items():
        own.sort(key=lambda visit: visit.number)
        first_view = own[0].views[0]
        summaries[tracking_id] = {
            "tracking_id": tracking_id,
            "first_seen": own[0].started_at,
            "last_seen": own[-1].ended_at,
            "visits": len(own),
            "pageviews": sum(visit.pageviews for visit in own),
            "entry_path": first_view.path,
            **{name: getattr(first_view, name) for name in FIRST_TOUCH},
            "ended": False,
        }
    return summaries


def new_visitors(visits, *, start, end, path=None) -> list[dict]:
    """Visitors whose first visit started in the range (on ``path``), newest first."""
    chosen = in_range(visits, start=start, end=end, path=path)
    ids = {visit.tracking_id for visit in chosen if visit.number == 1}
    summaries = visitors(visits)
    return sorted(
        (summaries[tracking_id] for tracking_id in ids),
        key=lambda row: (-row["first_seen"].timestamp(), row["tracking_id"]),
    )


def random_page_views(
    *, seed: int, visitor_count: int, start: dt.datetime, days: int, timeout: int
):
    """Unsaved page views of returning visitors, shuffled like late arrivals.

    Shapes that break things: gaps of exactly the timeout (one visit) and a microsecond more
    (two), a source announced again mid-visit (one visit) or a new one (two), ties on time,
    visits across midnight and days, a visitor with 13 visits and a visit of 22 pages.
    """
    rng = random.Random(seed)
    limit = dt.timedelta(seconds=timeout)
    views = []
    for index in range(visitor_count):
        tracking_id = uuid.UUID(int=rng.getrandbits(128))
        moment = start + dt.timedelta(
            seconds=rng.randrange(days * 86400), microseconds=rng.randrange(10**6)
        )
        planned = {0: 13, 1: 7, 2: 4}.get(index, 1 + min(int(rng.expovariate(0.9)), 5))
        if index == 0:  # a regular: all its visits within a day or so, mid-way through the data
            moment = start + dt.timedelta(days=days / 2)
        agent = rng.choice(AGENTS)
        for visit_index in range(planned):
            source = rng.choice(SOURCES)
            if rng.random() < 0.2:
                agent = rng.choice(AGENTS)
            pages = 22 if (index, visit_index) == (3, 0) else 1 + min(int(rng.expovariate(0.5)), 12)
            for page in range(pages):
                announced = source
                if page:
                    roll = rng.random()
                    announced = (
                        source if roll < 0.1 else rng.choice(SOURCES) if roll < 0.14 else ("",) * 4
                    )
                views.append(
                    Visit(
                        event_id=uuid.UUID(int=rng.getrandbits(128)),
                        tracking_id=tracking_id,
                        visited_at=moment,
                        path=rng.choice(PAGES),
                        **dict(zip(SOURCE_FIELDS, announced, strict=True)),
                        browser=agent[0],
                        os=agent[1],
                        device=agent[2],
                        status_code=rng.choice([200] * 9 + [404]),
                        response_ms=rng.randrange(1, 300),
                    )
                )
                roll = rng.random()
                if roll < 0.15:
                    pass  # the next page view ties on time
                elif roll < 0.18:
                    moment += limit
                else:
                    moment += dt.timedelta(
                        seconds=rng.randrange(1, 900), microseconds=rng.randrange(10**6)
                    )
            if index == 0:
                moment += limit + dt.timedelta(seconds=rng.randrange(1, 7200))
                continue
            moment += rng.choice(
                [
                    limit,
                    limit + dt.timedelta(microseconds=1),
                    limit + dt.timedelta(seconds=rng.randrange(1, 6 * 3600)),
                    dt.timedelta(days=rng.uniform(0.5, 2)),
                ]
            )
    rng.shuffle(views)
    return views
