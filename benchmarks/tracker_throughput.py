"""What the tracker costs the site: the counter page with and without it, side by side.

For each configuration and round, two fresh gunicorn servers (2 sync workers each, production
settings, the same session engine and database; each server's workers pinned to different
cores) run at once, one with ``TRACKER_ENABLED=0``, and two ``wrk`` load them both at the same
time on 127.0.0.1, as a returning visitor with an ordinary browser user agent. Each side then
gets an even share of the cores, so the ratio of their req/s is the ratio of what a page view
costs with and without the tracker, measured under the very same conditions. Loaded in turn
instead, two sides of the same code came out 0.59x to 1.62x apart round by round (an A/A run,
10 rounds, 2026-12-03: standard deviation 0.33), loaded together 0.91x to 1.08x (0.05): on these
virtual machines the speed of the cores drifts from second to second. One part of the
tracker's cost is shared between the sides: the work the Redis or PostgreSQL server does for
it runs on the cores both sides use (Redis: ~3 µs per XADD; PostgreSQL: ~90 µs per pipelined
insert; both against ~2,500 µs of worker CPU per page view).

The table gives the median over rounds of req/s, p50 and p99. The side started first alternates
from round to round, and it matters: the server started second came out 2-6% faster, whatever
its code (an A/A-like run with a tracker that does nothing, 15 rounds, 2026-12-04: 1.02x in the
rounds where the side without the tracker started first, 0.98x in the others). So the ratio
tracker/no tracker that the target is checked on is the median over pairs of consecutive
rounds, one of each order, of their geometric mean, in which that bias cancels out; the added
one-at-a-time p99 is the median of the per-round figures.
wrk keeps all workers saturated, so its p99 is mostly time spent queueing; each round therefore
also runs ``wrk -c1`` (one request at a time) on each server in turn for the latency a page view
itself gains.

Environment: ``BENCH_SECONDS`` (per wrk run, default 6; half that for ``-c1``), ``BENCH_ROUNDS``
(default 24, about 7 minutes per configuration: with rounds 5% apart, fewer cannot tell a 5%
target from its noise; an odd last round counts in every figure but the paired ratio; at least
2), ``BENCH_CONNECTIONS`` (default 8), ``BENCH_CONFIGS`` (some of
``sqlite,postgres,redis``; all by default), ``BENCH_POSTGRES`` (server URL without a database,
default ``postgres://postgres@127.0.0.1:5432``), ``BENCH_REDIS`` (default
``redis://127.0.0.1:6379/12``), ``BENCH_CONTROL=1`` (an A/A run: neither side has the tracker).
"""

from __future__ import annotations

import contextlib
import http.client
import math
import operator
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).parent / "gunicorn")
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
SECONDS = int(os.environ.get("BENCH_SECONDS", "6"))
ROUNDS = max(2, int(os.environ.get("BENCH_ROUNDS", "24")))  # one round of each start order
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
WORKERS = 2  # gunicorn sync workers per server
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
BENCH_DB = "tracker_bench"
BENCH_STREAM = "tracker:bench:visits"
TARGETS = {"sqlite": 0.85, "postgres": 0.85, "redis": 0.95}
CHOSEN = os.environ.get("BENCH_CONFIGS", ",".join(TARGETS)).split(",")
ADDED_P99_TARGET_MS = 2.0
# An A/A run: the "with tracker" side runs without it too, which shows how far apart two sides
# of the same code come out on this machine today.
CONTROL = os.environ.get("BENCH_CONTROL") == "1"


@dataclass
class Run:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    # CPU time the gunicorn workers spent per request (database and Redis servers not included).
    worker_cpu_ms: float = 0.0


@dataclass
class Configuration:
    key: str
    label: str
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def base_env(var_dir: Path) -> dict[str, str]:
    """Production settings, with nothing inherited that would change the comparison."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SESSION_ENGINE", "TRACKER_ENABLED", "DEBUG"}
    }
    env.update(
        DEBUG="0",
        SECRET_KEY="bench-only-secret-key-" + "x" * 40,
        SECURE_SSL_REDIRECT="0",
        VAR_DIR=str(var_dir),
        LOG_LEVEL="WARNING",
        TRACKER_REDIS_STREAM=BENCH_STREAM,
    )
    return env


def configurations(var_dir: Path) -> list[Configuration]:
    postgres_url = f"{POSTGRES}/{BENCH_DB}"
    return [
        Configuration(
            "sqlite",
            "SQLite, db sessions, direct sink",
            {**base_env(var_dir / "sqlite"), "SESSION_ENGINE": "db"},
        ),
        Configuration(
            "postgres",
            "PostgreSQL, db sessions, pipelined sink",
            {**base_env(var_dir / "pg"), "SESSION_ENGINE": "db", "DATABASE_URL": postgres_url},
        ),
        Configuration(
            "redis",
            "Redis sessions (cache), Redis sink",
            {
                **base_env(var_dir / "redis"),
                "SESSION_ENGINE": "cache",
                "DATABASE_URL": postgres_url,
                "REDIS_URL": REDIS,
            },
        ),
    ]


def create_postgres_database() -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]
        ).fetchone()
        if not exists:
            connection.execute(f"CREATE DATABASE {BENCH_DB}")


@contextlib.contextmanager
def prepared(configuration: Configuration):
    """Database, empty Redis, migrations and static files for one configuration; Redis is
    emptied again afterwards."""
    try:
        if "DATABASE_URL" in configuration.env:
            create_postgres_database()
        if "REDIS_URL" in configuration.env:
            clean_redis()
        manage(configuration.env, "migrate", "--noinput")
        # Production settings serve hashed static names from the manifest.
        manage(configuration.env, "collectstatic", "--noinput")
        yield
    finally:
        if "REDIS_URL" in configuration.env:
            with contextlib.suppress(Exception):
                clean_redis()


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout


def recorded_visits(configuration: Configuration) -> int:
    """Raw visits in the database, plus those still buffered in the Redis stream."""
    code = (
        "from tracker.models import Visit; from django.conf import settings; import redis\n"
        "n = Visit.objects.count()\n"
        "if settings.REDIS_URL: n += redis.Redis.from_url(settings.REDIS_URL)"
        ".xlen(settings.TRACKER_REDIS_STREAM)\n"
        "print(n)"
    )
    return int(manage(configuration.env, "shell", "-c", code).split()[-1])


def clean_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS)
    client.delete(BENCH_STREAM)
    for key in client.scan_iter(match="*django.contrib.sessions.cache*", count=1000):
        client.delete(key)


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *, tracker: bool):
    port = free_port()
    process = subprocess.Popen(
        [GUNICORN, "analytics_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS)],
        cwd=ROOT,
        env={**env, "TRACKER_ENABLED": "1" if tracker else "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        cookie = returning_visitor_cookie(port)
        spread_workers_over_cores(process.pid)
        yield Server(port, cookie, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def spread_workers_over_cores(master_pid: int) -> None:
    """Pin the server's first worker to the first core, the second to the next, and so on.

    Left to the scheduler, two servers loaded at once came out up to 9% apart in a round even
    with the same code (A/A, 25 rounds: standard deviation ~0.06); with each server's workers
    on different cores, as the two servers' are alike, 0.023 (16 rounds).
    """
    deadline = time.monotonic() + 30
    while len(pids := worker_pids(master_pid)) < WORKERS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn started {len(pids)} of {WORKERS} workers")
        time.sleep(0.1)
    cores = sorted(os.sched_getaffinity(0))
    for number, pid in enumerate(sorted(pids)):
        os.sched_setaffinity(pid, {cores[number % len(cores)]})


def worker_pids(master_pid: int) -> list[int]:
    return [
        int(pid)
        for children in Path(f"/proc/{master_pid}/task").glob("*/children")
        for pid in children.read_text().split()
    ]


def returning_visitor_cookie(port: int) -> str:
    """Wait for the server, then open one session as a browser would and return its cookie."""
    deadline = time.monotonic() + 30
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/", headers={"User-Agent": BROWSER_UA})
            response = connection.getresponse()
            response.read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    cookies = [
        header.split(";", 1)[0]
        for name, header in response.getheaders()
        if name.lower() == "set-cookie" and header.startswith("sessionid=")
    ]
    if response.status != 200 or not cookies:
        raise RuntimeError(f"the counter page answered {response.status} without a session")
    return cookies[0]


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def workers_cpu_seconds(master_pid: int) -> float:
    """User + system CPU seconds of the gunicorn master's worker processes (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in worker_pids(master_pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


@dataclass
class Server:
    port: int
    cookie: str  # a returning visitor's session
    master_pid: int


def wrk_command(server: Server, *, seconds: int, connections: int) -> list[str]:
    return [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-H", f"Cookie: {server.cookie}", "-H", f"User-Agent: {BROWSER_UA}",
        f"http://127.0.0.1:{server.port}/",
    ]  # fmt: skip


def wrk_together(
    servers: list[Server], *, seconds: int, connections: int = CONNECTIONS
) -> list[Run]:
    """Load every server at once, each with its own wrk, and return their runs in order."""
    started = []
    for server in servers:
        cpu_before = workers_cpu_seconds(server.master_pid)
        command = wrk_command(server, seconds=seconds, connections=connections)
        started.append((subprocess.Popen(command, stdout=subprocess.PIPE, text=True), cpu_before))
    runs = []
    for server, (process, cpu_before) in zip(servers, started, strict=True):
        output, _ = process.communicate()
        if process.returncode:
            raise subprocess.CalledProcessError(process.returncode, process.args, output)
        runs.append(parsed_wrk(output, server, cpu_before))
    return runs


def wrk(server: Server, *, seconds: int, connections: int = CONNECTIONS) -> Run:
    """Load one server alone."""
    return wrk_together([server], seconds=seconds, connections=connections)[0]


def parsed_wrk(output: str, server: Server, cpu_before: float) -> Run:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    percentiles = {
        match.group(1): to_ms(match.group(2), match.group(3))
        for match in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    cpu_ms = (workers_cpu_seconds(server.master_pid) - cpu_before) * 1000 / max(requests, 1)
    return Run(
        rate, percentiles["50"], percentiles["99"], int(errors.group(1)) if errors else 0, cpu_ms
    )


def measure(configuration: Configuration) -> tuple[dict[bool, list[Run]], dict[bool, list[Run]]]:
    """Return the saturated runs (both sides at once) and the one-connection runs, per side."""
    runs: dict[bool, list[Run]] = {False: [], True: []}
    single: dict[bool, list[Run]] = {False: [], True: []}
    for round_number in range(ROUNDS):
        # Each round starts a fresh pair of servers: two servers of the very same code kept a
        # difference of up to 5% in req/s and in CPU per request through all their rounds. The
        # side started first alternates, and so does the order of the one-connection runs.
        order = (False, True) if round_number % 2 == 0 else (True, False)
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(gunicorn(configuration.env, tracker=tracker and not CONTROL))
                for tracker in order
            ]
            wrk_together(servers, seconds=2)  # warm-up: imports, connections, caches
            for tracker, run in zip(order, wrk_together(servers, seconds=SECONDS), strict=True):
                runs[tracker].append(run)
            for tracker, server in zip(order, servers, strict=True):
                single[tracker].append(wrk(server, seconds=max(1, SECONDS // 2), connections=1))
    return runs, single


def median(runs: list[Run], attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


def per_round(
    runs: dict[bool, list[Run]], attribute: str, compare: Callable[[float, float], float]
) -> list[float]:
    """``compare(with tracker, without)`` of one figure, round by round: each pair of runs went
    back to back, so the machine's drift between rounds cancels out of it."""
    return [
        compare(getattr(tracked, attribute), getattr(plain, attribute))
        for plain, tracked in zip(runs[False], runs[True], strict=True)
    ]


def paired(ratios: list[float]) -> list[float]:
    """The geometric mean of each pair of consecutive rounds' ratios (one round of each start
    order): a bias of the side started first, ``b``, makes them ``r * b`` and ``r / b``."""
    pairs = zip(ratios[::2], ratios[1::2], strict=False)  # an odd last round has no partner
    return [math.sqrt(first * second) for first, second in pairs]


def main() -> None:
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk (Debian) — the tracker benchmark needs it")
        return
    print(
        f"gunicorn {WORKERS} sync workers per server, {ROUNDS} rounds, each with a fresh pair "
        f"of servers loaded at once for {SECONDS}s (a wrk -t1 -c{CONNECTIONS} each), then each "
        f"alone for {max(1, SECONDS // 2)}s of wrk -t1 -c1; the counter page as a returning "
        "visitor; medians.\n"
    )
    if CONTROL:
        print("A/A control (BENCH_CONTROL=1): the 'with tracker' side runs without it too.\n")
    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as temporary:
        var_dir = Path(temporary)
        rows = []
        for configuration in configurations(var_dir):
            if configuration.key not in CHOSEN:
                continue
            try:
                with prepared(configuration):
                    visits_before = recorded_visits(configuration)
                    runs = measure(configuration)
                    visits = recorded_visits(configuration) - visits_before
            except (OSError, subprocess.CalledProcessError, RuntimeError) as error:
                print(f"{configuration.label}: skipped ({error})")
                continue
            rows.append((configuration, runs, visits))
        print_table(rows)


def print_table(rows: list) -> None:
    header = (
        "| configuration | without tracker req/s (both sides at once) | p50 / p99 ms "
        "| with tracker req/s "
        "| p50 / p99 ms | ratio, median of the round pairs' (target) "
        "| ratio by the side started first: without / with | ratio of the medians "
        "| added p99 ms, saturated | one at a time: p50 / p99 ms without → with "
        "| added p99 ms, one at a time, median of the rounds' (target <= 2) "
        "| worker CPU ms/req without / with | visits recorded | errors |"
    )
    print(header)
    print("|---" * 14 + "|")
    for configuration, (runs, single), visits in rows:
        plain, tracked = runs[False], runs[True]
        ratios = per_round(runs, "requests_per_second", operator.truediv)
        ratio = statistics.median(paired(ratios))
        # Round 0 starts the side without the tracker first, round 1 the side with it, and so on.
        by_start = f"{statistics.median(ratios[::2]):.2f}x / {statistics.median(ratios[1::2]):.2f}x"
        ratio_of_medians = median(tracked, "requests_per_second") / median(
            plain, "requests_per_second"
        )
        added_p99 = median(tracked, "p99_ms") - median(plain, "p99_ms")
        added_single_p99 = statistics.median(per_round(single, "p99_ms", operator.sub))
        target = TARGETS[configuration.key]
        verdict = "met" if ratio >= target else "NOT met"
        p99_verdict = "met" if added_single_p99 <= ADDED_P99_TARGET_MS else "NOT met"
        if CONTROL:  # neither side has the tracker: the figures show noise, not a verdict
            verdict = p99_verdict = "A/A, no verdict"
        errors = sum(run.errors for run in plain + tracked + single[False] + single[True])
        print(
            f"| {configuration.label} "
            f"| {median(plain, 'requests_per_second'):,.0f} "
            f"| {median(plain, 'p50_ms'):.1f} / {median(plain, 'p99_ms'):.1f} "
            f"| {median(tracked, 'requests_per_second'):,.0f} "
            f"| {median(tracked, 'p50_ms'):.1f} / {median(tracked, 'p99_ms'):.1f} "
            f"| {ratio:.2f}x (>= {target}x, {verdict}) "
            f"| {by_start} "
            f"| {ratio_of_medians:.2f}x "
            f"| {added_p99:+.1f} "
            f"| {median(single[False], 'p50_ms'):.2f} / {median(single[False], 'p99_ms'):.2f} → "
            f"{median(single[True], 'p50_ms'):.2f} / {median(single[True], 'p99_ms'):.2f} "
            f"| {added_single_p99:+.2f} ({p99_verdict}) "
            f"| {median(plain, 'worker_cpu_ms'):.2f} / {median(tracked, 'worker_cpu_ms'):.2f} "
            f"| {visits:,} | {errors} |"
        )
    print(
        "\nper round, throughput ratio (tracker / none); per pair of rounds, their geometric "
        "mean; per round, one-at-a-time added p99 ms:"
    )
    for configuration, (runs, single), _visits in rows:
        ratios = per_round(runs, "requests_per_second", operator.truediv)
        rounds = ", ".join(f"{ratio:.3f}" for ratio in ratios)
        pairs = ", ".join(f"{ratio:.3f}" for ratio in paired(ratios))
        added = ", ".join(f"{ms:+.2f}" for ms in per_round(single, "p99_ms", operator.sub))
        print(f"  {configuration.label}: {rounds}; pairs {pairs}; {added}")
