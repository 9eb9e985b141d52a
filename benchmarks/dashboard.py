"""How fast the dashboard answers as the raw table grows: p50 / p95 per page and partial.

A dedicated PostgreSQL database (``dashboard_bench`` unless ``BENCH_DASHBOARD_DB`` names another;
dropped and created here) is filled with ``generate_traffic`` over 30 days (page views, their
events and the demo goals) and aggregated, and gets two funnels over the demo goals
(``BENCH_FUNNELS``); then a subprocess pointed at it by
``DATABASE_URL`` requests the full dashboard page and each htmx partial for the 30-day range
through Django's test client (view, queries and templates; no network), as a staff user, once
with the panel cache emptied before every request (cold, as just after an aggregation run) and
once with it filled (warm).
The raw table then grows to the next size (more sessions over the same 30 days, aggregated
incrementally) and the same requests are measured again, so the sizes compare like with like.

Environment: ``BENCH_POSTGRES`` (server URL without a database, default
``postgres://postgres@127.0.0.1:5432``), ``BENCH_DASHBOARD_VISITS`` (comma-separated raw visit
counts, default ``1000000,10000000``), ``BENCH_DASHBOARD_REQUESTS`` (per target, default 40),
``BENCH_DASHBOARD_REUSE=1`` (top up the database left by an earlier run instead of recreating it),
``BENCH_DASHBOARD_DB`` (the database's name), ``BENCH_DASHBOARD_ONLY`` (comma-separated texts:
measure only the targets whose label contains one of them, e.g. ``journeys,goals``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
BENCH_DB = os.environ.get("BENCH_DASHBOARD_DB", "dashboard_bench")
if not BENCH_DB.isidentifier():  # it goes into DROP DATABASE unquoted
    raise SystemExit(f"BENCH_DASHBOARD_DB must be a plain identifier, not {BENCH_DB!r}")
SIZES = [
    int(size) for size in os.environ.get("BENCH_DASHBOARD_VISITS", "1000000,10000000").split(",")
]
REQUESTS = int(os.environ.get("BENCH_DASHBOARD_REQUESTS", "40"))
# Keep the database of an earlier run and only top it up (its rows must be from this code).
REUSE = os.environ.get("BENCH_DASHBOARD_REUSE") == "1"
WARMUP = 3
DAYS = 30
VISITS_PER_SESSION = 4.56  # what generate_traffic draws on average; the real count is measured
P95_TARGET_MS = 150.0
FUNNEL_P95_TARGET_MS = 500.0
# (name, across_visits, goal names) over tracker.goals.DEMO_GOALS: "Viewed pricing" is ~9% of
# generate_traffic's page views, "Read the docs" ~4%; its signups and purchases are events.
BENCH_FUNNELS = [
    ("Pricing to purchase", False, ["Viewed pricing", "Signed up", "Purchased"]),
    ("Docs to signup, any visit", True, ["Read the docs", "Viewed pricing", "Signed up"]),
]
GROWTH_TARGET = 1.3
FILTER_1 = "referrer=www.google.com"
FILTER_2 = f"{FILTER_1}&device=mobile"
FILTER_3 = f"{FILTER_2}&page=%2Fpricing%2F"
# (label, query string, htmx target or None for the full page)
TARGETS = [
    ("full page", "range=30d", None),
    ("partial: panels (range switch)", "range=30d", "panels"),
    ("partial: cards", "range=30d", "cards"),
    ("partial: live", "range=30d", "live"),
    ("partial: visits per session", "range=30d", "visits"),
    ("partial: over time", "range=30d", "over-time"),
    ("partial: pages", "range=30d", "pages"),
    ("partial: sources", "range=30d", "sources"),
    ("partial: tech", "range=30d", "tech"),
    ("partial: sessions (page 1)", "range=30d", "sessions"),
    ("partial: sessions (page 200)", "range=30d&page=200", "sessions"),
    ("partial: goals", "range=30d", "goals"),
    ("partial: funnels", "range=30d", "funnels"),
    ("stats.json", "range=30d", "json"),
    # Filters (issue 23) read the per-visit table: a quarter of the visits, then narrower.
    ("filtered full page: 1 filter", f"range=30d&{FILTER_1}", None),
    ("filtered full page: 2 filters", f"range=30d&{FILTER_2}", None),
    ("filtered full page: 3 filters", f"range=30d&{FILTER_3}", None),
    ("filtered stats.json: 3 filters", f"range=30d&{FILTER_3}", "json"),
    # The Journeys view reads the visits' page lists: its own target, JOURNEYS_P95_TARGET_MS.
    ("journeys: from the top entry page, 3 steps", "range=30d", "journeys"),
    ("journeys: from /pricing/, 5 steps", "range=30d&from=/pricing/&steps=5", "journeys"),
    ("journeys: to /signup/, 3 steps", "range=30d&to=/signup/", "journeys"),
]
P95_FILTERED_TARGET_MS = 500.0
ONLY = [text for text in os.environ.get("BENCH_DASHBOARD_ONLY", "").split(",") if text]
if ONLY:
    TARGETS = [target for target in TARGETS if any(text in target[0] for text in ONLY)]
JOURNEYS_P95_TARGET_MS = 1000.0
URLS = {"json": "/dashboard/api/stats.json", "journeys": "/dashboard/journeys/"}


def _bench_env(var_dir: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"{POSTGRES}/{BENCH_DB}",
        # DEBUG=1 keeps static files unhashed (no collectstatic into the shared tree); the
        # views, queries and templates run as in production.
        "DEBUG": "1",
        "VAR_DIR": var_dir,
        "ALLOWED_HOSTS": "testserver",
        "REDIS_URL": "",
        "PYTHONPATH": str(ROOT),
    }


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def _recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {BENCH_DB}")


def _sql(query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/{BENCH_DB}", autocommit=True) as connection:
        cursor = connection.execute(query)
        return cursor.fetchall() if cursor.description else []


def _grow_to(env: dict[str, str], visits: int, *, seed: int) -> tuple[int, float]:
    """Add sessions until the raw table holds about ``visits`` rows; aggregate; vacuum."""
    current = _sql("SELECT count(*) FROM tracker_visit")[0][0]
    sessions = max(0, round((visits - current) / VISITS_PER_SESSION))
    started = time.perf_counter()
    if sessions:
        _manage(
            env,
            "generate_traffic",
            "--sessions",
            str(sessions),
            "--days",
            str(DAYS),
            "--seed",
            str(seed),
            "--demo-goals",
            "--verbosity",
            "0",
        )
        _manage(env, "aggregate_visits")
    _sql("VACUUM ANALYZE")
    return _sql("SELECT count(*) FROM tracker_visit")[0][0], time.perf_counter() - started


def _measure(env: dict[str, str]) -> dict[str, dict[str, float]]:
    result = subprocess.run(
        [PYTHON, "-m", "benchmarks.dashboard", "measure"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def define_funnels() -> None:
    """Run inside a subprocess once the demo goals exist: the funnels the panel shows."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics_site.settings")
    import django

    django.setup()
    from dashboard.funnel_edits import funnel_create
    from tracker.funnel_runs import funnel_runs_catch_up
    from tracker.models import Funnel, Goal

    goals = {goal.name: goal for goal in Goal.objects.all()}
    for name, across_visits, steps in BENCH_FUNNELS:
        if not Funnel.objects.filter(name=name).exists():
            funnel_create(
                name=name, across_visits=across_visits, goals=[goals[goal] for goal in steps]
            )
    # What the queued rebuild does (and the next aggregation run, for an older database).
    started = time.perf_counter()
    if rebuilt := funnel_runs_catch_up():
        print(f"runs of {rebuilt} funnels built in {time.perf_counter() - started:.1f} s")


def measure() -> None:
    """Run inside the subprocess: time every target, print one JSON line of p50/p95 in ms."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics_site.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    results = {}
    for label, query, target in TARGETS:
        url = f"{URLS.get(target, '/dashboard/')}?{query}"
        headers = {"HX-Request": "true", "HX-Target": target} if target not in (None, *URLS) else {}
        for mode in ("cold", "warm"):
            timings = []
            for attempt in range(WARMUP + REQUESTS):
                if mode == "cold":
                    cache.clear()  # as right after an aggregation run
                started = time.perf_counter()
                response = client.get(url, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (url, response.status_code)
                if attempt >= WARMUP:
                    timings.append(elapsed)
            timings.sort()
            results[f"{label}|{mode}"] = {
                "p50": statistics.median(timings),
                "p95": timings[min(len(timings) - 1, round(0.95 * len(timings)) - 1)],
            }
    print(json.dumps(results))


def main() -> None:
    measured: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as var_dir:
        env = _bench_env(var_dir)
        if not REUSE:
            _recreate_database()
        _manage(env, "migrate", "--noinput", "--verbosity", "0")
        for index, size in enumerate(SIZES):
            visits, seconds = _grow_to(env, size, seed=index + 1)
            subprocess.run(
                [PYTHON, "-m", "benchmarks.dashboard", "funnels"], cwd=ROOT, env=env, check=True
            )
            print(
                f"raw visits: {visits:,} (generated and aggregated in {seconds:.0f} s)", flush=True
            )
            measured[visits] = _measure(env)
    sizes = list(measured)
    columns = [(size, mode) for mode in ("cold", "warm") for size in sizes]
    header = "| target | " + " | ".join(
        f"{size / 1e6:.1f}M {mode} p50 / p95 ms" for size, mode in columns
    )
    if len(sizes) > 1:
        header += " | cold p95 growth"
    print("\n" + header + " |")
    print("|---" * (len(columns) + 1 + (len(sizes) > 1)) + "|")
    worst = {"cold": 0.0, "warm": 0.0}
    worst_journeys = {"cold": 0.0, "warm": 0.0}
    worst_growth = 0.0
    worst_filtered = 0.0
    for label, _query, _target in TARGETS:
        cells = []
        for size, mode in columns:
            figures = measured[size][f"{label}|{mode}"]
            cells.append(f"{figures['p50']:.1f} / {figures['p95']:.1f}")
            if size == sizes[-1] and label.startswith("filtered"):
                worst_filtered = max(worst_filtered, figures["p95"])
            elif size == sizes[-1] and "funnels" not in label:
                worsts = worst_journeys if _target == "journeys" else worst
                worsts[mode] = max(worsts[mode], figures["p95"])
        line = f"| {label} | " + " | ".join(cells)
        if len(sizes) > 1:
            first = measured[sizes[0]][f"{label}|cold"]["p95"]
            growth = measured[sizes[-1]][f"{label}|cold"]["p95"] / first
            worst_growth = max(worst_growth, growth)
            line += f" | {growth:.2f}x"
        print(line + " |")
    dashboard_targets = any(target != "journeys" for _label, _query, target in TARGETS)
    if dashboard_targets:
        print(
            f"\nAt {sizes[-1]:,} visits, worst p95: cold cache {worst['cold']:.1f} ms, warm cache "
            f"{worst['warm']:.1f} ms (target {P95_TARGET_MS:.0f} ms)"
            + (
                f"; worst cold p95 growth from the smallest size {worst_growth:.2f}x "
                f"(target {GROWTH_TARGET}x)"
                if len(sizes) > 1
                else ""
            )
        )
    if any(target == "journeys" for _label, _query, target in TARGETS):
        print(
            f"Journeys at {sizes[-1]:,} visits, worst p95: cold cache "
            f"{worst_journeys['cold']:.1f} ms, warm cache {worst_journeys['warm']:.1f} ms "
            f"(target {JOURNEYS_P95_TARGET_MS:.0f} ms)"
        )
    if worst_filtered:
        print(
            f"Filtered targets at {sizes[-1]:,} visits: worst p95 {worst_filtered:.1f} ms "
            f"(target {P95_FILTERED_TARGET_MS:.0f} ms)"
        )
    funnels = measured[sizes[-1]].get("partial: funnels|cold")
    if funnels:
        print(
            f"Funnels partial ({len(BENCH_FUNNELS)} funnels), cold p95 {funnels['p95']:.1f} ms "
            f"(target {FUNNEL_P95_TARGET_MS:.0f} ms); the other targets' worst above leaves it out"
        )
    print(
        f"{REQUESTS} requests per target after {WARMUP} warm-up, 30-day range, "
        f"{os.cpu_count()} cores. Cold: the panel cache emptied before each request (as after an "
        "aggregation run); warm: cached rollup panels (live and sessions are always fresh)."
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["measure"]:
        measure()
    elif sys.argv[1:] == ["funnels"]:
        define_funnels()
    else:
        main()
