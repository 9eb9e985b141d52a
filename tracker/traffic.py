"""Realistic synthetic raw visits for demos and benchmarks, written fast.

Sessions start on a daily rhythm over the last ``days`` days; page popularity is Zipf-like;
session lengths are geometric (so about a third bounce); browsers, systems, devices, referrers
and UTM campaigns follow plausible mixes. The seed fixes the traffic's shape; the event and
tracking ids are fresh on every run, so running twice adds traffic instead of colliding.

PostgreSQL gets the rows through ``COPY`` (about ten times faster than ``bulk_create``); other
databases through ``bulk_create`` in chunks. Memory stays flat: rows are produced per chunk.
"""

from __future__ import annotations

import math
import random
import secrets
import uuid
from bisect import bisect
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from tracker.models import Visit

CHUNK_SESSIONS = 20_000  # per transaction
WRITE_SESSIONS = 500  # per COPY write
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


def _site_paths(rng: random.Random, count: int = 300) -> list[str]:
    paths = list(TOP_PAGES)
    while len(paths) < count:
        section = rng.choice(SECTIONS)
        paths.append(f"/{section}/{section[:3]}-{len(paths):04d}/")
    return paths


class TrafficModel:
    """Draws sessions: start on the daily rhythm, device mix, first touch, pages and gaps.

    Per-visit draws come from lookup tables indexed by random bits, and rows are built as COPY
    text directly: Python's per-row cost is what limits the rows per second.
    """

    def __init__(self, *, seed: int, days: int, end: datetime) -> None:
        self.rng = rng = random.Random(seed)
        self.start_seconds = int((end - timedelta(days=days)).timestamp())
        self.days = days
        paths = _site_paths(rng)
        page = _Picker([(1 / rank**1.1, path) for rank, path in enumerate(paths, 1)])
        self.pages = [page(rng) for _ in range(1 << 16)]
        self.gaps = [int(rng.expovariate(1 / 45) * 1e6) + 1_000_000 for _ in range(1 << 12)]
        # status and response time, 1% not found
        self.tails = [
            f"\t{404 if rng.random() < 0.01 else 200}\t{int(rng.expovariate(1 / 40)) + 2}\n"
            for _ in range(1 << 10)
        ]
        self.hour = _Picker(list(zip(HOURLY_RHYTHM, range(24), strict=True)))
        self.device = _Picker(DEVICES)
        self.system = {device: _Picker(mix) for device, mix in SYSTEMS.items()}
        self.browser = {system: _Picker(mix) for system, mix in BROWSERS.items()}
        self.referrer = _Picker(REFERRERS)
        self.campaign = _Picker(CAMPAIGNS)
        self.log_continue = math.log(CONTINUE_PROBABILITY)
        self.salt = secrets.randbits(128)  # fresh ids each run; the seed fixes everything else
        self.clock = [
            f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
            for second in range(86_400)
        ]
        self.day_text: dict[int, str] = {}

    def session_length(self) -> int:
        pages = 1 + int(math.log(1.0 - self.rng.random()) / self.log_continue)
        return min(pages, MAX_SESSION_PAGES)

    def timestamp(self, micros: int) -> str:
        """Format epoch microseconds as UTC text; strftime would cost more than the rest."""
        seconds, fraction = divmod(micros, 1_000_000)
        day, second_of_day = divmod(seconds, 86_400)
        day_text = self.day_text.get(day)
        if day_text is None:
            day_text = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d ")
            self.day_text[day] = day_text
        return f"{day_text}{self.clock[second_of_day]}.{fraction:06d}+00"

    def session_lines(self) -> list[str]:
        """Return one session's visits as COPY text lines, columns in ``COPY_COLUMNS`` order."""
        rng = self.rng
        bits = rng.getrandbits
        day = rng.randrange(self.days)
        second = (day * 24 + self.hour(rng)) * 3600 + rng.randrange(3600)
        micros = (self.start_seconds + second) * 1_000_000 + rng.randrange(1_000_000)
        tracking_id = f"{bits(128) ^ self.salt:032x}"
        device = self.device(rng)
        system = self.system[device](rng)
        browser = self.browser[system](rng)
        source, medium, campaign = self.campaign(rng)
        agent = f"{browser}\t{system}\t{device}"
        # The first page carries the referrer and campaign; later pages come from the site.
        first = f"{source}\t{medium}\t{campaign}\t{self.referrer(rng)}\t{agent}"
        later = f"\t\t\t\t{agent}"
        lines = []
        for position in range(self.session_length()):
            lines.append(
                f"{bits(128) ^ self.salt:032x}\t{tracking_id}\t{self.timestamp(micros)}\t"
                f"{self.pages[bits(16)]}\t{later if position else first}{self.tails[bits(10)]}"
            )
            micros += self.gaps[bits(12)]
        return lines


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


def traffic_generate(
    *, sessions: int, days: int, seed: int, end: datetime | None = None, progress: bool = True
) -> int:
    """Write ``sessions`` synthetic sessions' raw visits ending at ``end``; return the row count."""
    model = TrafficModel(seed=seed, days=days, end=end or timezone.now() - timedelta(hours=1))
    write = _copy_chunk if connection.vendor == "postgresql" else _bulk_create_chunk
    written = 0
    with tqdm(total=sessions, unit="session", disable=not progress or None) as bar:
        for begin in range(0, sessions, CHUNK_SESSIONS):
            count = min(CHUNK_SESSIONS, sessions - begin)
            with transaction.atomic():
                written += write(model, count)
            bar.update(count)
    if connection.vendor == "postgresql":
        # Fresh planner statistics, so the next aggregation plans for the rows just loaded.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Visit._meta.db_table}")
    return written


def _copy_chunk(model: TrafficModel, sessions: int) -> int:
    """COPY text straight to the server, a few hundred sessions per write so it works meanwhile.

    Generated values never contain tabs, newlines or backslashes, so no escaping is needed.
    """
    statement = f"COPY {Visit._meta.db_table} ({', '.join(COPY_COLUMNS)}) FROM STDIN"
    written = 0
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for begin in range(0, sessions, WRITE_SESSIONS):
            lines = [
                line
                for _ in range(min(WRITE_SESSIONS, sessions - begin))
                for line in model.session_lines()
            ]
            copy.write("".join(lines))
            written += len(lines)
    return written


def _bulk_create_chunk(model: TrafficModel, sessions: int) -> int:
    visits = []
    for _ in range(sessions):
        for line in model.session_lines():
            values = dict(zip(COPY_COLUMNS, line.rstrip("\n").split("\t"), strict=True))
            values["event_id"] = uuid.UUID(values["event_id"])
            values["tracking_id"] = uuid.UUID(values["tracking_id"])
            values["visited_at"] = datetime.fromisoformat(values["visited_at"])
            visits.append(Visit(**values))
    Visit.objects.bulk_create(visits, batch_size=500)
    return len(visits)
