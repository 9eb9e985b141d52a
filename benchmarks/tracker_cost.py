"""What the tracker costs per page view in CPU time, with no load generator competing for cores.

``tracker_throughput`` measures req/s under wrk, which on two cores shares them between wrk, the
workers and the database: rounds of the same code differ by up to 30%. Here the counter page is
served in-process by Django's WSGI handler, one request after another, as a returning visitor,
and each round counts the CPU time of everything the request uses: the app process, its
PostgreSQL backend and the Redis server. Processes with and without the tracker alternate, a
fresh one per round; the table gives medians and the ratio of CPU per page view, which is what
throughput is bound by on a saturated machine.

CPU time still moves by up to 20% between rounds on these virtual machines. With
``BENCH_COST_COUNTER=instructions`` the app process runs under ``valgrind --tool=callgrind``
instead, which counts instructions: the same count for the same code, whatever else runs. A
page view's count is the difference between a run of ``INSTRUCTION_VIEWS[1]`` and one of
``INSTRUCTION_VIEWS[0]`` page views, divided by the difference, so start-up work (imports, the
crawler list's regexes) cancels out. It covers the app process only (all of SQLite; not the
PostgreSQL or Redis servers) and takes a few minutes per configuration.

Environment: ``BENCH_COST_REQUESTS`` (per round, default 3000), ``BENCH_ROUNDS`` (default 5),
``BENCH_COST_COUNTER`` (``cpu`` or ``instructions``), and ``BENCH_CONFIGS``, ``BENCH_POSTGRES``,
``BENCH_REDIS`` as for ``tracker_throughput``.

Then ``record_event`` against a page view's own tracking (issue 22: an event must cost no more):
in one process with the configuration's real sink, rounds alternate N calls of
``tracker.record_event``, N page views' tracking (the middleware around a view that returns a
ready page: its checks, the classification, the row and its append) and N calls of
``visit_record`` alone (the row and its append), each on the request of a returning visitor
whose session is loaded (a request loads it whether it tracks or not); CPU of the app, its
PostgreSQL backends and Redis, per call, medians.

Below the table, the user-agent classification on its own (issue 21's targets): a never-seen
user agent (real browsers' and crawlers' user agents from the pinned public collections, each
classified once, uncached) and a cached one, and the cold first classification that the
middleware's warm-up moves to worker start.
"""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.tracker_throughput import (
    BROWSER_UA,
    CHOSEN,
    ROOT,
    TARGETS,
    configurations,
    prepared,
)

REQUESTS = int(os.environ.get("BENCH_COST_REQUESTS", "3000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
WARM_UP = int(os.environ.get("BENCH_COST_WARM_UP", "300"))
PARTS = ("app", "database", "redis")
COUNTER = os.environ.get("BENCH_COST_COUNTER", "cpu")
INSTRUCTION_VIEWS = (100, 500)


def main() -> None:
    instructions = COUNTER == "instructions"
    if instructions:
        print(
            "The counter page served in-process under callgrind, as a returning visitor; "
            f"instructions of the app process per page view ({INSTRUCTION_VIEWS[1]} minus "
            f"{INSTRUCTION_VIEWS[0]} page views).\n"
        )
    else:
        print(
            f"The counter page served in-process, {ROUNDS} alternating rounds of {REQUESTS:,} "
            "page views per side, as a returning visitor; CPU ms per page view, medians.\n"
        )
    rows = []
    event_rows = []
    with tempfile.TemporaryDirectory(prefix="tracker-cost-") as temporary:
        for configuration in configurations(Path(temporary)):
            if configuration.key not in CHOSEN:
                continue
            try:
                with prepared(configuration):
                    if instructions:
                        figures = [
                            instructions_per_view(configuration.env, tracker=side)
                            for side in (False, True)
                        ]
                    else:
                        figures = alternating_rounds(configuration.env)
                    events = None if instructions else event_rounds(configuration.env)
            except (OSError, subprocess.CalledProcessError) as error:
                print(f"{configuration.label}: skipped ({error})")
                continue
            rows.append((configuration, figures))
            if events is not None:
                event_rows.append((configuration, events))
    (print_instructions if instructions else print_table)(rows)
    if event_rows:
        print_event_table(event_rows)
    print_classification()


def alternating_rounds(env: dict[str, str]) -> dict[bool, list[dict[str, float]]]:
    rounds = {False: [], True: []}
    for number in range(ROUNDS):
        order = (False, True) if number % 2 == 0 else (True, False)
        for tracker in order:
            rounds[tracker].append(serve_round(env, tracker=tracker))
    return rounds


def serve_round(env: dict[str, str], *, tracker: bool) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks.tracker_cost", str(REQUESTS)]
    output = subprocess.run(
        command,
        cwd=ROOT,
        env={**env, "TRACKER_ENABLED": "1" if tracker else "0"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def instructions_per_view(env: dict[str, str], *, tracker: bool) -> float:
    counts = []
    for views in INSTRUCTION_VIEWS:
        with tempfile.NamedTemporaryFile(prefix="callgrind-") as output:
            command = [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={output.name}",
                sys.executable, "-m", "benchmarks.tracker_cost", str(views),
            ]  # fmt: skip
            result = subprocess.run(
                command,
                cwd=ROOT,
                # A fixed hash seed: the same dict and set layouts in every run.
                env={**env, "TRACKER_ENABLED": "1" if tracker else "0", "PYTHONHASHSEED": "0"},
                check=True,
                capture_output=True,
                text=True,
            )
        counts.append(int(re.search(r"Collected : (\d+)", result.stderr).group(1)))
    return (counts[1] - counts[0]) / (INSTRUCTION_VIEWS[1] - INSTRUCTION_VIEWS[0])


def print_instructions(rows: list) -> None:
    print(
        "| configuration | instructions per page view without tracker | with tracker "
        "| added by the tracker |"
    )
    print("|---" * 4 + "|")
    for configuration, (without, with_tracker) in rows:
        print(
            f"| {configuration.label} | {without / 1e6:.3f} M | {with_tracker / 1e6:.3f} M "
            f"| {(with_tracker - without) / 1e6:+.3f} M ({with_tracker / without - 1:+.1%}) |"
        )


def print_table(rows: list) -> None:
    print(
        "| configuration | CPU ms per page view without tracker (app + database + redis) "
        "| with tracker | added by the tracker | implied throughput ratio (target) |"
    )
    print("|---" * 5 + "|")
    for configuration, rounds in rows:
        without, with_tracker = (
            {part: statistics.median(run[part] for run in rounds[side]) for part in PARTS}
            for side in (False, True)
        )
        total_without, total_with = sum(without.values()), sum(with_tracker.values())
        ratio = total_without / total_with
        target = TARGETS[configuration.key]

        def parts(cpu: dict[str, float]) -> str:
            return " + ".join(f"{cpu[part]:.3f}" for part in PARTS)

        print(
            f"| {configuration.label} | {total_without:.3f} ({parts(without)}) "
            f"| {total_with:.3f} ({parts(with_tracker)}) "
            f"| {total_with - total_without:+.3f} ms ({(total_with / total_without - 1):+.1%}) "
            f"| {ratio:.2f}x (>= {target}x, {'met' if ratio >= target else 'NOT met'}) |"
        )
    print("\nCPU ms per page view per round, without / with:")
    for configuration, rounds in rows:
        pairs = [
            f"{sum(plain[p] for p in PARTS):.3f} / {sum(tracked[p] for p in PARTS):.3f}"
            for plain, tracked in zip(rounds[False], rounds[True], strict=True)
        ]
        print(f"  {configuration.label}: {', '.join(pairs)}")


EVENT_CALLS = int(os.environ.get("BENCH_EVENT_CALLS", "2000"))


def event_rounds(env: dict[str, str]) -> dict[str, list[dict[str, float]]]:
    command = [sys.executable, "-m", "benchmarks.tracker_cost", "events", str(EVENT_CALLS)]
    output = subprocess.run(
        command, cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def print_event_table(rows: list) -> None:
    print(
        f"\nrecord_event against a page view's tracking ({ROUNDS} alternating rounds of "
        f"{EVENT_CALLS:,} calls each, in one process; CPU µs per call: app + database + redis, "
        "medians)\n"
    )
    print(
        "| configuration | a page view's tracking | its visit_record alone | record_event "
        "| record_event / page view's tracking (target <= 1) |"
    )
    print("|---" * 5 + "|")
    for configuration, rounds in rows:
        page_view, visit, event = (
            {part: statistics.median(run[part] for run in rounds[side]) for part in PARTS}
            for side in ("page_view", "visit", "event")
        )
        totals = [sum(cpu.values()) for cpu in (page_view, visit, event)]
        ratio = totals[2] / totals[0]

        def cell(cpu: dict[str, float]) -> str:
            parts = " + ".join(f"{cpu[part]:.1f}" for part in PARTS)
            return f"{sum(cpu.values()):.1f} ({parts})"

        print(
            f"| {configuration.label} | {cell(page_view)} | {cell(visit)} | {cell(event)} "
            f"| {ratio:.2f} ({'met' if ratio <= 1.0 else 'NOT met'}) |"
        )


def event_cost(calls: int) -> dict[str, list[dict[str, float]]]:
    """In this process: CPU µs per record_event and per page view's visit_record, with the
    configuration's real sink, in alternating rounds."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics_site.settings")
    django.setup()
    import redis
    from django.conf import settings
    from django.db import connection
    from django.http import HttpResponse
    from django.test import RequestFactory

    from tracker import record_event
    from tracker.buffer import PostgresPipelineSink, flush_open_sinks, open_sinks
    from tracker.classify import classify_user_agent
    from tracker.middleware import VisitTrackingMiddleware
    from tracker.recording import visit_record

    page = HttpResponse("<p>page</p>")
    middleware = VisitTrackingMiddleware(lambda request: page)
    session_store = middleware.session_store
    session = session_store()
    session["num_visits"] = 1
    session.save()
    request = RequestFactory().get(
        "/", headers={"user-agent": BROWSER_UA, "accept": "text/html"}, SERVER_NAME="127.0.0.1"
    )
    request.visit_tracker = middleware
    response = HttpResponse("<p>page</p>")
    agent = classify_user_agent(BROWSER_UA)

    # A returning visitor's session, loaded once: a request loads it whether or not it tracks.
    request.session = session_store(session.session_key)
    request.session.load()

    def one_page_view():
        middleware(request)

    def one_visit():
        visit_record(request=request, response=response, agent=agent, elapsed_ms=1,
                     sink=middleware.sink)  # fmt: skip

    def one_event():
        record_event(request, "signup", props={"plan": "pro"})

    client = redis.Redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None

    def cpu() -> tuple[float, float, float]:
        database = 0.0
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backends = [cursor.fetchone()[0]]
            backends += [
                sink.connection.info.backend_pid
                for sink in open_sinks()
                if isinstance(sink, PostgresPipelineSink) and sink.connection is not None
            ]
            database = sum(process_cpu_seconds(pid) for pid in backends)
        served = 0.0
        if client is not None:
            info = client.info("cpu")
            served = info["used_cpu_user"] + info["used_cpu_sys"]
        return time.process_time(), database, served

    # Warm both paths (connections, statements).
    sides = {"page_view": one_page_view, "visit": one_visit, "event": one_event}
    for _ in range(WARM_UP):
        for work in sides.values():
            work()
    flush_open_sinks()
    rounds: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for number in range(ROUNDS):
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        for side in order:
            work = sides[side]
            before = cpu()
            for _ in range(calls):
                work()
            flush_open_sinks()
            after = cpu()
            rounds[side].append(
                {
                    part: (end - start) * 1e6 / calls
                    for part, start, end in zip(PARTS, before, after, strict=True)
                }
            )
    return rounds


UNCACHED_TARGET_US = 1000
CACHED_TARGET_US = 10
CACHED_CALLS = 200_000
MATOMO_BROWSER_SAMPLE = 3000


def print_classification() -> None:
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.tracker_cost", "classify"],
        cwd=ROOT,
        env={**os.environ, "DEBUG": os.environ.get("DEBUG", "1")},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cost = json.loads(output.strip().splitlines()[-1])

    def verdict(value: float, target: float) -> str:
        return "met" if value < target else "NOT met"

    print("\n| user-agent classification | µs | target |")
    print("|---" * 3 + "|")
    for group in ("browsers", "crawlers"):
        mean, p99 = cost[f"{group}_mean_us"], cost[f"{group}_p99_us"]
        cpu_mean, cpu_p99 = cost[f"{group}_cpu_mean_us"], cost[f"{group}_cpu_p99_us"]
        print(
            f"| never seen, {cost[f'{group}_count']:,} real {group}' user agents: mean / p99, "
            f"CPU (wall) | {cpu_mean:.1f} / {cpu_p99:.1f} ({mean:.1f} / {p99:.1f}) "
            f"| < {UNCACHED_TARGET_US} ({verdict(cpu_p99, UNCACHED_TARGET_US)}) |"
        )
    print(
        f"| cached, mean of {CACHED_CALLS:,} calls | {cost['cached_us']:.2f} "
        f"| < {CACHED_TARGET_US} ({verdict(cost['cached_us'], CACHED_TARGET_US)}) |"
    )
    print(
        f"| first user agent in a cold process (paid by the warm-up at worker start) "
        f"| {cost['cold_first_us']:,.0f} | at start, not in a page view |"
    )


def classification_cost() -> dict[str, float]:
    """In this process: wall µs to classify never-seen and cached user agents."""
    import random

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics_site.settings")
    django.setup()
    from tests.tracker.public_user_agents import (
        crawler_user_agents,
        fake_useragent_browsers,
        matomo_browser_user_agents,
    )
    from tracker.classify import _classify_cached, classifier_warm_up, classify_user_agent

    started = time.perf_counter()
    classify_user_agent(BROWSER_UA)
    cold_first_us = (time.perf_counter() - started) * 1e6
    classifier_warm_up()
    matomo = [user_agent for user_agent, _label in matomo_browser_user_agents()]
    groups = {
        "browsers": [user_agent for user_agent, _label in fake_useragent_browsers()]
        + random.Random(0).sample(matomo, MATOMO_BROWSER_SAMPLE),
        "crawlers": crawler_user_agents(),
    }
    cost = {"cold_first_us": cold_first_us}
    for group, user_agents in groups.items():
        _classify_cached.cache_clear()
        timings, cpu_timings = [], []
        for user_agent in dict.fromkeys(user_agents):
            started, cpu_started = time.perf_counter(), time.thread_time_ns()
            classify_user_agent(user_agent)
            cpu_timings.append((time.thread_time_ns() - cpu_started) / 1e3)
            timings.append((time.perf_counter() - started) * 1e6)
        cost[f"{group}_count"] = len(timings)
        # Wall time counts whatever else the machine ran meanwhile (other processes' time
        # slices add milliseconds to a few calls on a busy machine); the thread's CPU time is
        # what the classification itself costs, and what the target is checked on.
        for prefix, values in (("", timings), ("cpu_", cpu_timings)):
            values.sort()
            cost[f"{group}_{prefix}mean_us"] = statistics.fmean(values)
            cost[f"{group}_{prefix}p99_us"] = values[int(len(values) * 0.99)]
    classify_user_agent(BROWSER_UA)
    started = time.perf_counter()
    for _ in range(CACHED_CALLS):
        classify_user_agent(BROWSER_UA)
    cost["cached_us"] = (time.perf_counter() - started) * 1e6 / CACHED_CALLS
    return cost


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a local process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(requests: int) -> dict[str, float]:
    """In this process: serve the counter page ``requests`` times; return CPU ms per request."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics_site.settings")
    django.setup()
    import redis
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    from tracker.buffer import PostgresPipelineSink, flush_open_sinks, open_sinks

    def pipeline_sinks() -> list[PostgresPipelineSink]:
        return [
            sink
            for sink in open_sinks()
            if isinstance(sink, PostgresPipelineSink) and sink.connection is not None
        ]

    handler = get_wsgi_application()

    def get(cookie: str = "") -> tuple[str, list[tuple[str, str]]]:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_USER_AGENT": BROWSER_UA,
            "HTTP_ACCEPT": "text/html",
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        if cookie:
            environ["HTTP_COOKIE"] = cookie
        answer = {}

        def start_response(status, headers, exc_info=None):
            answer.update(status=status, headers=headers)

        body = handler(environ, start_response)
        try:
            b"".join(body)
        finally:
            body.close()
        return answer["status"], answer["headers"]

    status, headers = get()
    cookies = [value.split(";", 1)[0].strip() for name, value in headers if name == "Set-Cookie"]
    cookie = next((c for c in cookies if c.startswith("sessionid=")), "")
    if not status.startswith("200") or not cookie:
        raise SystemExit(f"the counter page answered {status} without a session")
    for _ in range(WARM_UP):
        get(cookie)

    def database_cpu() -> float:
        if connection.vendor != "postgresql":
            return 0.0  # SQLite runs inside the app process
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backends = [cursor.fetchone()[0]]
        # The pipelined sink's own connection (opened during the warm-up) has a backend too.
        backends += [sink.connection.info.backend_pid for sink in pipeline_sinks()]
        return sum(process_cpu_seconds(pid) for pid in backends)

    client = redis.Redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None

    def redis_cpu() -> float:
        if client is None:
            return 0.0
        info = client.info("cpu")
        return info["used_cpu_user"] + info["used_cpu_sys"]

    before = (time.process_time(), database_cpu(), redis_cpu())
    for _ in range(requests):
        get(cookie)
    flush_open_sinks()  # replies still due count towards this round
    after = (time.process_time(), database_cpu(), redis_cpu())
    return {
        part: (end - start) * 1000 / requests
        for part, start, end in zip(PARTS, before, after, strict=True)
    }


if __name__ == "__main__":
    if sys.argv[1] == "classify":
        print(json.dumps(classification_cost()))
    elif sys.argv[1] == "events":
        print(json.dumps(event_cost(int(sys.argv[2]))))
    else:
        print(json.dumps(serve(int(sys.argv[1]))))
