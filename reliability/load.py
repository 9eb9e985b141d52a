"""An asyncio load generator: many simulated visitors, each with its own cookie jar.

Every visitor is one Django session. The generator remembers, per visitor, how many page views
it sent and were answered, so the scenario can compare exactly what the tracker recorded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
# A mix of tracked pages: the counter, the about page, and campaign landings on both.
PAGES = [
    "/",
    "/about/",
    "/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn",
    "/about/?utm_source=partner&utm_campaign=launch",
]


COOKIE_TESTED = b"Cookie Tested Successfully"


@dataclass
class VisitorResult:
    session_key: str = ""
    # Responses that are pages (anything but a redirect): each is at most one recorded visit...
    page_views: int = 0
    # ...and each one served without a server error is exactly one.
    served: int = 0
    # About pages that said the test cookie worked: each recorded one cookie_tested event...
    events_served: int = 0
    # ...and about pages that failed (a 5xx, or a 400 saving the session) may have recorded one.
    events_maybe: int = 0


@dataclass
class LoadResult:
    visitors: list[VisitorResult] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def served(self) -> int:
        return sum(visitor.served for visitor in self.visitors)

    @property
    def page_views(self) -> int:
        return sum(visitor.page_views for visitor in self.visitors)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


async def _visitor(
    base_url: str, views: int, rng: random.Random, result: LoadResult, progress: list[int]
) -> VisitorResult:
    visitor = VisitorResult()
    async with httpx.AsyncClient(
        base_url=base_url, headers={"User-Agent": BROWSER_UA}, timeout=30.0
    ) as client:
        for _ in range(views):
            try:
                response = await client.get(rng.choice(PAGES))
            except httpx.HTTPError as error:
                result.errors[type(error).__name__] += 1
                progress[0] += 1
                continue
            result.statuses[response.status_code] += 1
            if not response.is_redirect:
                visitor.page_views += 1
                visitor.served += response.status_code < 500
            if response.url.path == "/about/":
                if response.status_code == 200 and COOKIE_TESTED in response.content:
                    visitor.events_served += 1
                elif response.status_code >= 400:
                    # The view may have recorded it before the response failed: a 500, or the
                    # 400 of a session that could not be saved while PostgreSQL restarted.
                    visitor.events_maybe += 1
            progress[0] += 1
        visitor.session_key = client.cookies.get("sessionid", "")
    return visitor


async def _drive(
    base_url: str,
    *,
    visitors: int,
    views_per_visitor: int,
    concurrency: int,
    seed: int,
    on_progress,
) -> LoadResult:
    result = LoadResult()
    progress = [0]
    gate = asyncio.Semaphore(concurrency)
    rng = random.Random(seed)

    async def one(index: int) -> VisitorResult:
        async with gate:
            return await _visitor(
                base_url, views_per_visitor, random.Random(rng.random() + index), result, progress
            )

    async def report() -> None:
        total = visitors * views_per_visitor
        while True:
            await asyncio.sleep(0.25)
            on_progress(progress[0] / total)

    reporter = asyncio.create_task(report())
    started = time.perf_counter()
    result.visitors = list(await asyncio.gather(*(one(i) for i in range(visitors))))
    result.seconds = time.perf_counter() - started
    reporter.cancel()
    return result


def drive(
    base_url: str,
    *,
    visitors: int,
    views_per_visitor: int,
    concurrency: int,
    seed: int = 1,
    on_progress=lambda fraction: None,
) -> LoadResult:
    """Send ``visitors * views_per_visitor`` page views, ``concurrency`` visitors at a time."""
    return asyncio.run(
        _drive(
            base_url,
            visitors=visitors,
            views_per_visitor=views_per_visitor,
            concurrency=concurrency,
            seed=seed,
            on_progress=on_progress,
        )
    )
