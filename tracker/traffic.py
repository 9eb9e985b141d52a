"""Realistic synthetic raw page views for demos and benchmarks, written fast.

Each tracked session is one visitor (one tracking id). Visitors first arrive on a daily rhythm
over the last ``days`` days; about 30% come back, some many times (a geometric count of returns,
at most ``MAX_RETURNS``), each return an hour to a week after their last page view, and only
while their cookie lives (``SESSION_COOKIE_AGE`` from the first page view) and before ``end``.
Every visit's first page view carries a referrer and campaign drawn afresh, its later page views
none; browser, system, device and country are the visitor's. Page popularity is Zipf-like; visit
lengths are geometric (so about a third bounce); about one visit in a hundred pauses once for
about the visit timeout (``TRACKER_VISIT_TIMEOUT``), just under, exactly at or just over it, so that
aggregation meets gaps at its threshold. The seed fixes the traffic's shape; the event and
tracking ids are fresh on every run, so running twice adds traffic instead of colliding.

About one visit in seven also records events at one of its page views (``EVENT_MIX``):
``cookie_tested``, ``download`` (a ``file`` prop), ``signup`` and ``purchase`` (a ``plan`` prop
and the plan's price as revenue). They are drawn from a random stream of their own, so the page
views of a seed stay what they were without them, and written with ``bulk_create`` after each
chunk's page views.

Ids are time-ordered (UUIDv7), made for the page view's time and the visitor's first page view,
as the tracker would have made them. Visits are drawn in the order they start (a visitor's
returns wait in a heap until the arrivals reach them) and each write's rows are sorted by time,
so rows are stored nearly in time order, as the tracker stores them: the time and event id
indexes then grow at their right edge, which makes the load much cheaper than random-order
inserts (writing each visitor's returns with its first visit cost the server a fifth more).

PostgreSQL gets the rows through binary ``COPY`` (about ten times faster than ``bulk_create``);
other databases through ``bulk_create`` in chunks. Memory stays flat: rows are held per write
(per chunk for ``bulk_create``), first arrivals per hour, and returning visitors until their
last return (about 20 MB at 10M rows over 30 days).
"""

from __future__ import annotations

import math
import random
import secrets
import struct
import uuid
from bisect import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from heapq import heappop, heappush
from itertools import accumulate, islice

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from tracker.ids import RANDOM_BITS, UNIX_EPOCH, uuid7_int
from tracker.models import Event, Visit

CHUNK_SESSIONS = 20_000  # visitors per transaction
WRITE_ROWS = 1_500  # per COPY write
HOUR_MICROS = 3_600_000_000
MAX_SESSION_PAGES = 60
CONTINUE_PROBABILITY = 0.65  # geometric visit length: mean ~2.9 pages, ~35% bounces
RETURN_PROBABILITY = 0.3  # of a visitor coming back at least once
RETURN_AGAIN_PROBABILITY = 0.55  # geometric returns: ~2.2 for those who come back at all
MAX_RETURNS = 20
# Seconds from a visit's last page view to the next visit, log-uniform: as many come back within
# the next few hours as after a few days.
RETURN_AFTER = (3_600, 7 * 86_400)
PAUSE_PROBABILITY = 0.015  # of a visit of two pages or more (about 1% of all visits)
PAUSE_SECONDS = 30  # how far under or over the visit timeout a pause ends

# (chance per visit, name, props' choices, revenue per plan): independent draws, each at one of
# the visit's page views, a few seconds after it.
PLAN_PRICES = {"pro": Decimal("19.00"), "team": Decimal("49.00"), "enterprise": Decimal("199.00")}
EVENT_MIX = [
    (0.08, "cookie_tested", {}),
    (0.04, "download", {"file": ["whitepaper.pdf", "pricing.pdf", "app.dmg", "app.exe"]}),
    (0.03, "signup", {"plan": ["free", "free", "free", "pro", "team"]}),
    (0.012, "purchase", {"plan": ["pro", "pro", "pro", "team", "team", "enterprise"]}),
]
SECTIONS = ["blog", "docs", "guides", "changelog", "customers"]
TOP_PAGES = ["/", "/pricing/", "/about/", "/features/", "/contact/", "/signup/", "/login/"]
# (weight, value) mixes; browser and system depend on the device like real traffic does.
DEVICES = [(55, "desktop"), (40, "mobile"), (4, "tablet"), (1, "other")]
SYSTEMS = {
    "desktop": [(70, "Windows"), (22, "Mac OS X"), (6, "Linux"), (2, "Chrome OS")],
    "mobile": [(68, "Android"), (32, "iOS")],
    "tablet": [(60, "iOS"), (40, "Android")],
    "other": [(50, "Linux"), (50, "Other")],
}
BROWSERS = {
    "Windows": [(65, "Chrome"), (20, "Edge"), (12, "Firefox"), (3, "Opera")],
    "Mac OS X": [(55, "Safari"), (35, "Chrome"), (10, "Firefox")],
    "Linux": [(55, "Firefox"), (45, "Chrome")],
    "Chrome OS": [(100, "Chrome")],
    "Android": [(75, "Chrome Mobile"), (20, "Samsung Internet"), (5, "Firefox Mobile")],
    "iOS": [(85, "Mobile Safari"), (15, "Chrome Mobile iOS")],
    "Other": [(100, "Other")],
}
REFERRERS = [
    (45, ""),
    (25, "www.google.com"),
    (5, "www.bing.com"),
    (4, "duckduckgo.com"),
    (5, "news.ycombinator.com"),
    (4, "www.reddit.com"),
    (4, "t.co"),
    (4, "github.com"),
    (4, "www.linkedin.com"),
]
# (weight, (utm_source, utm_medium, utm_campaign)); most sessions carry no campaign.
CAMPAIGNS = [
    (85, ("", "", "")),
    (6, ("newsletter", "email", "spring-launch")),
    (4, ("twitter", "social", "spring-launch")),
    (3, ("google", "cpc", "brand")),
    (2, ("partner", "referral", "webinar")),
]
# A long tail, as real sites see; "" is an address of no known country (a VPN, a private one).
COUNTRIES = [
    (30, "US"), (9, "DE"), (8, "GB"), (6, "IN"), (5, "FR"), (4, "CA"), (4, "NL"), (3, "BR"),
    (3, "JP"), (3, "ES"), (2, "IT"), (2, "AU"), (2, "PL"), (2, "SE"), (2, "CN"), (1, "CH"),
    (1, "MX"), (1, "KR"), (1, "NG"), (1, "ZA"), (1, "AR"), (1, "ID"), (1, "TR"), (1, "UA"),
    (1, "NZ"), (1, "IE"), (1, "SG"), (1, "VN"), (3, ""),
]  # fmt: skip
# Relative sessions per UTC hour: quiet at night, a peak in the afternoon.
HOURLY_RHYTHM = [1 + math.sin((hour - 8) * math.pi / 12) * 0.8 for hour in range(24)]


class _Picker:
    """Weighted choice by bisection over cumulative weights: cheap per call."""

    def __init__(self, weighted: list[tuple[float, object]]) -> None:
        self.cumulative = list(accumulate(weight for weight, _ in weighted))
        self.values = [value for _, value in weighted]
        self.total = self.cumulative[-1]

    def __call__(self, rng: random.Random) -> object:
        return self.values[bisect(self.cumulative, rng.random() * self.total)]


def _site_paths(count: int = 300) -> list[str]:
    """The site's pages, in popularity order: the same for every seed, so that traffic added
    with another seed visits the same site (the dashboard benchmark grows one site's traffic)."""
    rng = random.Random(0)
    paths = list(TOP_PAGES)
    while len(paths) < count:
        section = rng.choice(SECTIONS)
        paths.append(f"/{section}/{section[:3]}-{len(paths):04d}/")
    return paths


def _agent_mix() -> list[tuple[float, tuple[bytes, bytes]]]:
    """Each device, system and browser with the chance of drawing them one after the other,
    encoded once: as they end a visit's first row (after its source) and a later row."""
    mix = []
    device_total = sum(weight for weight, _ in DEVICES)
    for device_weight, device in DEVICES:
        system_total = sum(weight for weight, _ in SYSTEMS[device])
        for system_weight, system in SYSTEMS[device]:
            browser_total = sum(weight for weight, _ in BROWSERS[system])
            for browser_weight, browser in BROWSERS[system]:
                device_chance = device_weight / device_total
                system_chance = system_weight / system_total
                chance = device_chance * system_chance * browser_weight / browser_total
                agent = copy_field(browser) + copy_field(system) + copy_field(device)
                mix.append((chance, (agent, EMPTY_FIELD * 4 + agent)))
    return mix


class TrafficModel:
    """Draws visitors: first arrival on the daily rhythm, device mix, returns, and per visit its
    source, pages and gaps.

    Per-visit draws come from lookup tables indexed by random bits, and rows are built as binary
    COPY rows directly, with the tables holding encoded fields: Python's per-row cost must stay
    below the server's.
    """

    def __init__(self, *, seed: int, days: int, end: datetime) -> None:
        self.rng = rng = random.Random(seed)
        self.start_seconds = int((end - timedelta(days=days)).timestamp())
        self.end_micros = (end - UNIX_EPOCH) // timedelta(microseconds=1)
        self.days = days
        self.cookie_age_micros = settings.SESSION_COOKIE_AGE * 1_000_000
        paths = _site_paths()
        page = _Picker([(1 / rank**1.1, path) for rank, path in enumerate(paths, 1)])
        self.pages = [copy_field(page(rng)) for _ in range(1 << 16)]
        self.gaps = [int(rng.expovariate(1 / 45) * 1e6) + 1_000_000 for _ in range(1 << 12)]
        low, high = map(math.log, RETURN_AFTER)
        self.returns_after = [int(math.exp(rng.uniform(low, high)) * 1e6) for _ in range(1 << 12)]
        # Whole seconds, so that some pauses last exactly the timeout (which continues a visit).
        timeout = settings.TRACKER_VISIT_TIMEOUT
        self.pauses = [
            (timeout + seconds) * 1_000_000 for seconds in range(-PAUSE_SECONDS, PAUSE_SECONDS + 1)
        ]
        # status and response time, 1% not found
        self.tails = [
            STATUS_AND_RESPONSE.pack(
                2, 404 if rng.random() < 0.01 else 200, 4, int(rng.expovariate(1 / 40)) + 2
            )
            for _ in range(1 << 10)
        ]
        self.hour = _Picker(list(zip(HOURLY_RHYTHM, range(24), strict=True)))
        self.agent = _Picker(_agent_mix())
        # A visit's source as the encoded utm_source, utm_medium, utm_campaign, referrer_host.
        self.campaign = _Picker(
            [(weight, b"".join(map(copy_field, utm))) for weight, utm in CAMPAIGNS]
        )
        self.referrer = _Picker([(weight, copy_field(host)) for weight, host in REFERRERS])
        self.country = _Picker([(weight, copy_field(code)) for weight, code in COUNTRIES])
        self.log_continue = math.log(CONTINUE_PROBABILITY)
        self.log_return_again = math.log(RETURN_AGAIN_PROBABILITY)
        # Fresh ids each run (their random bits); the seed fixes everything else.
        self.salt = secrets.randbits(RANDOM_BITS)
        # Returns still to come: (start, times scheduled so far, visitor), earliest first. Only
        # returning visitors wait here, about three days' worth of them.
        self.pending: list[tuple[int, int, _Visitor]] = []
        self.scheduled = 0
        # Events: a stream of their own (see the top), held until their chunk is written.
        self.event_rng = random.Random(seed ^ 0x5EED)
        self.events: list[Event] = []

    def session_length(self) -> int:
        """Return a visit's page count."""
        pages = 1 + int(math.log(1.0 - self.rng.random()) / self.log_continue)
        return min(pages, MAX_SESSION_PAGES)

    def return_count(self) -> int:
        """Return how many times a visitor means to come back, if its cookie and the window
        allow."""
        rng = self.rng
        if rng.random() >= RETURN_PROBABILITY:
            return 0
        returns = 1 + int(math.log(1.0 - rng.random()) / self.log_return_again)
        return min(returns, MAX_RETURNS)

    def session_starts(self, sessions: int) -> Iterator[int]:
        """Yield ``sessions`` visitors' first arrivals (Unix microseconds) in chronological order.

        Each arrival's day (uniform) and hour (on the daily rhythm) are drawn but only counted;
        then each hour's starts are drawn and sorted, so memory holds one hour's sessions.
        """
        rng = self.rng
        hours = [0] * (self.days * 24)
        for _ in range(sessions):
            hours[rng.randrange(self.days) * 24 + self.hour(rng)] += 1
        for hour, count in enumerate(hours):
            hour_start = (self.start_seconds + hour * 3600) * 1_000_000
            for offset in sorted([rng.randrange(HOUR_MICROS) for _ in range(count)]):
                yield hour_start + offset

    def row_batches(self, arrivals: Iterable[int], *, flush: bool) -> Iterator[list[bytes]]:
        """Yield, as binary COPY rows in ``COPY_COLUMNS`` order, the page views of visitors first
        arriving at ``arrivals`` (Unix microseconds, chronological) and of the returns due by
        then, or of all returns still to come if ``flush``; at least ``WRITE_ROWS`` rows at a
        time, each batch sorted by time.

        Visits are drawn in the order they start, so rows come nearly in time order, as the
        tracker would have stored them. Sorting the rows sorts them by event id, which follows
        the page view's time: every row starts with the same field count and event id length.
        """
        rows: list[bytes] = []
        for visit in self._visits_in_start_order(arrivals, flush=flush):
            rows += visit
            if len(rows) >= WRITE_ROWS:
                rows.sort()
                yield rows
                rows = []
        rows.sort()
        yield rows

    def _visits_in_start_order(self, arrivals: Iterable[int], *, flush: bool):
        """Yield each visit's rows: the returns due before each first arrival, then it."""
        pending = self.pending
        for arrival in arrivals:
            while pending and pending[0][0] <= arrival:
                start, _, visitor = heappop(pending)
                yield self.visit_rows(visitor, start)
            yield self.visit_rows(self.visitor(arrival), arrival)
        while flush and pending:
            start, _, visitor = heappop(pending)
            yield self.visit_rows(visitor, start)

    def visitor(self, arrival: int) -> _Visitor:
        """Draw a visitor first arriving at ``arrival``: its tracking id, device, country and
        returns."""
        rng = self.rng
        tracking_id = uuid7_int(unix_ns=arrival * 1000, random_bits=rng.getrandbits(62) ^ self.salt)
        agent, later = self.agent(rng)
        country = self.country(rng)
        return _Visitor(
            tracking_field=UUID_LENGTH + tracking_id.to_bytes(16),
            agent=agent + country,
            later=later + country,
            # The cookie's expiry and the end of the window cut the visitor's page views short.
            limit=min(arrival + self.cookie_age_micros, self.end_micros),
            returns=self.return_count(),
        )

    def visit_rows(self, visitor: _Visitor, start: int) -> list[bytes]:
        """Return the page views of ``visitor``'s visit starting at ``start`` and schedule its
        next return, if any is left and due before its limit."""
        rng = self.rng
        bits = rng.getrandbits
        salt = self.salt
        page_fields, gaps, tails = self.pages, self.gaps, self.tails
        tracking_field = visitor.tracking_field
        limit = visitor.limit
        later = visitor.later
        # A visit's first page carries its own referrer and campaign; later pages come from the
        # site.
        first = self.campaign(rng) + self.referrer(rng) + visitor.agent
        pages = self.session_length()
        paused = rng.randrange(1, pages) if pages > 1 and rng.random() < PAUSE_PROBABILITY else 0
        rows = []
        micros = start
        for position in range(pages):
            if position:
                if position == paused:
                    micros += self.pauses[rng.randrange(len(self.pauses))]
                else:
                    micros += gaps[bits(12)]
                if micros >= limit:
                    break
            event_id = uuid7_int(unix_ns=micros * 1000, random_bits=bits(62) ^ salt)
            rows.append(
                b"".join(
                    (
                        ROW_START,
                        event_id.to_bytes(16),
                        tracking_field,
                        TIMESTAMP_LENGTH,
                        (micros - POSTGRES_EPOCH_MICROS).to_bytes(8, signed=True),
                        page_fields[bits(16)],
                        later if position else first,
                        tails[bits(10)],
                    )
                )
            )
        if rows:
            self._visit_events(rows, tracking_field)
        if visitor.returns:
            visitor.returns -= 1
            micros += self.returns_after[bits(12)]
            if micros < limit:
                self.scheduled += 1
                heappush(self.pending, (micros, self.scheduled, visitor))
        return rows

    def _visit_events(self, rows: list[bytes], tracking_field: bytes) -> None:
        """Draw the visit's events (``EVENT_MIX``) at some of its page views (binary rows)."""
        rng = self.event_rng
        for chance, name, choices in EVENT_MIX:
            if rng.random() >= chance:
                continue
            row = rows[rng.randrange(len(rows))]
            micros = int.from_bytes(row[ROW_TIME], signed=True) + POSTGRES_EPOCH_MICROS
            micros += rng.randrange(1, 10_000_000)
            path_length = int.from_bytes(row[ROW_PATH : ROW_PATH + 4])
            props = {key: rng.choice(values) for key, values in choices.items()}
            event_id = uuid7_int(unix_ns=micros * 1000, random_bits=rng.getrandbits(62) ^ self.salt)
            self.events.append(
                Event(
                    event_id=uuid.UUID(int=event_id),
                    tracking_id=uuid.UUID(bytes=tracking_field[4:]),
                    occurred_at=UNIX_EPOCH + timedelta(microseconds=micros),
                    name=name,
                    path=row[ROW_PATH + 4 : ROW_PATH + 4 + path_length].decode(),
                    props=props,
                    revenue=PLAN_PRICES[props["plan"]] if name == "purchase" else None,
                )
            )

    def take_events(self) -> list[Event]:
        """Return the events drawn since the last call, and forget them."""
        events, self.events = self.events, []
        return events


@dataclass(slots=True)
class _Visitor:
    """What a visitor keeps between its visits: the encoded fields of its rows, the time its
    page views must come before, and how many returns it has left."""

    tracking_field: bytes
    agent: bytes
    later: bytes
    limit: int
    returns: int


COPY_COLUMNS = [
    "event_id",
    "tracking_id",
    "visited_at",
    "path",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "referrer_host",
    "browser",
    "os",
    "device",
    "country",
    "status_code",
    "response_ms",
]
# PostgreSQL's binary COPY format, so the server parses no uuid, timestamp or integer text (a
# fifth of its CPU per row, measured). A row is its field count, then each field as its length
# and its bytes, big-endian, typed exactly like the column (a field of the wrong width makes
# COPY fail, e.g. "incorrect binary data format"): change these with the model's fields.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
COPY_TRAILER = b"\xff\xff"
ROW_START = struct.pack(">hi", len(COPY_COLUMNS), 16)  # the field count, the event id's length
UUID_LENGTH = struct.pack(">i", 16)
TIMESTAMP_LENGTH = struct.pack(">i", 8)  # timestamptz: int64 microseconds since 2000-01-01 UTC
STATUS_AND_RESPONSE = struct.Struct(">ihii")  # smallint status_code, integer response_ms
EMPTY_FIELD = struct.pack(">i", 0)
POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
POSTGRES_EPOCH_MICROS = int(POSTGRES_EPOCH.timestamp()) * 1_000_000
# Where a row holds its time and its path: after the field count and the event id (6 + 16
# bytes), the tracking id (4 + 16) and the time's length (4).
ROW_TIME = slice(46, 54)
ROW_PATH = 54


@cache  # a few hundred distinct values, each encoded once instead of once per session
def copy_field(text: str) -> bytes:
    """Encode a text column's value as a binary COPY field."""
    data = text.encode()
    return len(data).to_bytes(4) + data


def traffic_generate(
    *, sessions: int, days: int, seed: int, end: datetime | None = None, progress: bool = True
) -> int:
    """Write the page views of ``sessions`` synthetic visitors over the ``days`` days before
    ``end``; return the row count."""
    model = TrafficModel(seed=seed, days=days, end=end or timezone.now() - timedelta(hours=1))
    write = _copy_chunk if connection.vendor == "postgresql" else _bulk_create_chunk
    starts = model.session_starts(sessions)
    written = 0
    with tqdm(total=sessions, unit="visitor", disable=not progress or None) as bar:
        for begin in range(0, sessions, CHUNK_SESSIONS):
            count = min(CHUNK_SESSIONS, sessions - begin)
            arrivals = islice(starts, count)
            with transaction.atomic():
                written += write(model.row_batches(arrivals, flush=begin + count == sessions))
                Event.objects.bulk_create(model.take_events(), batch_size=1000)
            bar.update(count)
    if connection.vendor == "postgresql":
        # Fresh planner statistics, so the next aggregation plans for the rows just loaded.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Visit._meta.db_table}")
            cursor.execute(f"ANALYZE {Event._meta.db_table}")
    return written


def _copy_chunk(batches: Iterable[list[bytes]]) -> int:
    """COPY binary rows straight to the server, a few hundred visitors' per write so it works
    meanwhile."""
    statement = (
        f"COPY {Visit._meta.db_table} ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    )
    written = 0
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(COPY_HEADER)
        for rows in batches:
            copy.write(b"".join(rows))
            written += len(rows)
        copy.write(COPY_TRAILER)
    return written


def _bulk_create_chunk(batches: Iterable[list[bytes]]) -> int:
    visits = [visit_from_copy_row(row) for rows in batches for row in rows]
    Visit.objects.bulk_create(visits, batch_size=500)
    return len(visits)


def visit_from_copy_row(row: bytes) -> Visit:
    """Decode a binary COPY row, so that other databases get the very same visits."""
    fields = []
    offset = 2  # past the field count
    for _ in COPY_COLUMNS:
        length = int.from_bytes(row[offset : offset + 4])
        fields.append(row[offset + 4 : offset + 4 + length])
        offset += 4 + length
    event_id, tracking_id, visited_at, *texts, status_code, response_ms = fields
    return Visit(
        event_id=uuid.UUID(bytes=event_id),
        tracking_id=uuid.UUID(bytes=tracking_id),
        visited_at=POSTGRES_EPOCH + timedelta(microseconds=int.from_bytes(visited_at, signed=True)),
        **dict(zip(COPY_COLUMNS[3:-2], (text.decode() for text in texts), strict=True)),
        status_code=int.from_bytes(status_code),
        response_ms=int.from_bytes(response_ms),
    )
