"""Realistic synthetic raw visits for demos and benchmarks, written fast.

Sessions start on a daily rhythm over the last ``days`` days; page popularity is Zipf-like;
session lengths are geometric (so about a third bounce); browsers, systems, devices, referrers
and UTM campaigns follow plausible mixes. The seed fixes the traffic's shape; the event and
tracking ids are fresh on every run, so running twice adds traffic instead of colliding.

Sessions are written in the order they start, with time-ordered ids (UUIDv7) made for the visit
time and the session start, as the tracker would have made them: every index of the raw visits
then grows at its right edge, which makes the load much cheaper than random-order inserts.

PostgreSQL gets the rows through binary ``COPY`` (about ten times faster than ``bulk_create``);
other databases through ``bulk_create`` in chunks. Memory stays flat: rows are produced per chunk
and session starts per hour.
"""

from __future__ import annotations

import math
import random
import secrets
import struct
import uuid
from bisect import bisect
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import accumulate, islice

from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from tracker.ids import RANDOM_BITS, uuid7_int
from tracker.models import Visit

CHUNK_SESSIONS = 20_000  # per transaction
WRITE_ROWS = 1_500  # per COPY write
HOUR_MICROS = 3_600_000_000
MAX_SESSION_PAGES = 60
CONTINUE_PROBABILITY = 0.65  # geometric session length: mean ~2.9 pages, ~35% bounces

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


class TrafficModel:
    """Draws sessions: start on the daily rhythm, device mix, first touch, pages and gaps.

    Per-visit draws come from lookup tables indexed by random bits, and rows are built as binary
    COPY rows directly, with the tables holding encoded fields: Python's per-row cost must stay
    below the server's.
    """

    def __init__(self, *, seed: int, days: int, end: datetime) -> None:
        self.rng = rng = random.Random(seed)
        self.start_seconds = int((end - timedelta(days=days)).timestamp())
        self.days = days
        paths = _site_paths()
        page = _Picker([(1 / rank**1.1, path) for rank, path in enumerate(paths, 1)])
        self.pages = [copy_field(page(rng)) for _ in range(1 << 16)]
        self.gaps = [int(rng.expovariate(1 / 45) * 1e6) + 1_000_000 for _ in range(1 << 12)]
        # status and response time, 1% not found
        self.tails = [
            STATUS_AND_RESPONSE.pack(
                2, 404 if rng.random() < 0.01 else 200, 4, int(rng.expovariate(1 / 40)) + 2
            )
            for _ in range(1 << 10)
        ]
        self.hour = _Picker(list(zip(HOURLY_RHYTHM, range(24), strict=True)))
        self.device = _Picker(DEVICES)
        self.system = {device: _Picker(mix) for device, mix in SYSTEMS.items()}
        self.browser = {system: _Picker(mix) for system, mix in BROWSERS.items()}
        self.referrer = _Picker(REFERRERS)
        self.campaign = _Picker(CAMPAIGNS)
        self.log_continue = math.log(CONTINUE_PROBABILITY)
        # Fresh ids each run (their random bits); the seed fixes everything else.
        self.salt = secrets.randbits(RANDOM_BITS)

    def session_length(self) -> int:
        pages = 1 + int(math.log(1.0 - self.rng.random()) / self.log_continue)
        return min(pages, MAX_SESSION_PAGES)

    def session_starts(self, sessions: int) -> Iterator[int]:
        """Yield ``sessions`` start times (Unix microseconds) in chronological order.

        Each session's day (uniform) and hour (on the daily rhythm) are drawn but only counted;
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

    def session_rows(self, start: int) -> list[bytes]:
        """Return the visits of a session starting at ``start`` (Unix microseconds) as binary
        COPY rows, columns in ``COPY_COLUMNS`` order."""
        rng = self.rng
        bits = rng.getrandbits
        salt = self.salt
        tracking_id = uuid7_int(unix_ns=start * 1000, random_bits=bits(62) ^ salt)
        tracking_field = UUID_LENGTH + tracking_id.to_bytes(16)
        device = self.device(rng)
        system = self.system[device](rng)
        browser = self.browser[system](rng)
        source, medium, campaign = self.campaign(rng)
        agent = copy_field(browser) + copy_field(system) + copy_field(device)
        # The first page carries the referrer and campaign; later pages come from the site.
        first = b"".join(map(copy_field, (source, medium, campaign, self.referrer(rng)))) + agent
        later = EMPTY_FIELD * 4 + agent
        rows = []
        micros = start
        for position in range(self.session_length()):
            event_id = uuid7_int(unix_ns=micros * 1000, random_bits=bits(62) ^ salt)
            rows.append(
                b"".join(
                    (
                        ROW_START,
                        event_id.to_bytes(16),
                        tracking_field,
                        TIMESTAMP_LENGTH,
                        (micros - POSTGRES_EPOCH_MICROS).to_bytes(8, signed=True),
                        self.pages[bits(16)],
                        later if position else first,
                        self.tails[bits(10)],
                    )
                )
            )
            micros += self.gaps[bits(12)]
        return rows


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


@cache  # a few hundred distinct values, each encoded once instead of once per session
def copy_field(text: str) -> bytes:
    """Encode a text column's value as a binary COPY field."""
    data = text.encode()
    return len(data).to_bytes(4) + data


def traffic_generate(
    *, sessions: int, days: int, seed: int, end: datetime | None = None, progress: bool = True
) -> int:
    """Write ``sessions`` synthetic sessions' raw visits ending at ``end``; return the row count."""
    model = TrafficModel(seed=seed, days=days, end=end or timezone.now() - timedelta(hours=1))
    write = _copy_chunk if connection.vendor == "postgresql" else _bulk_create_chunk
    starts = model.session_starts(sessions)
    written = 0
    with tqdm(total=sessions, unit="session", disable=not progress or None) as bar:
        for begin in range(0, sessions, CHUNK_SESSIONS):
            count = min(CHUNK_SESSIONS, sessions - begin)
            with transaction.atomic():
                written += write(model, islice(starts, count))
            bar.update(count)
    if connection.vendor == "postgresql":
        # Fresh planner statistics, so the next aggregation plans for the rows just loaded.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Visit._meta.db_table}")
    return written


def _copy_chunk(model: TrafficModel, starts: Iterable[int]) -> int:
    """COPY binary rows straight to the server, a few hundred sessions per write so it works
    meanwhile."""
    statement = (
        f"COPY {Visit._meta.db_table} ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    )
    written = 0
    rows: list[bytes] = []
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(COPY_HEADER)
        for start in starts:
            rows += model.session_rows(start)
            if len(rows) >= WRITE_ROWS:
                copy.write(b"".join(rows))
                written += len(rows)
                rows = []
        copy.write(b"".join(rows) + COPY_TRAILER)
    return written + len(rows)


def _bulk_create_chunk(model: TrafficModel, starts: Iterable[int]) -> int:
    visits = [visit_from_copy_row(row) for start in starts for row in model.session_rows(start)]
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
