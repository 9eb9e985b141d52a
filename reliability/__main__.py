"""`make reliability`: run every scenario in its own process and print one table.

Each scenario starts (and stops, by PID) only its own servers on 127.0.0.1, bounds its loops in
count and time, and prints one JSON line of figures that this runner turns into a table row.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime


def load(
    config: str, *options: str, visitors: int, views: int, concurrency: int = 200, workers: int = 4
) -> tuple:
    """A load scenario: ``visitors`` with ``views`` page views each, ``concurrency`` at once."""
    sizes = [
        *("--visitors", str(visitors), "--views", str(views)),
        *("--concurrency", str(concurrency), "--workers", str(workers)),
    ]
    return ("reliability.scenario_load", ["--config", config, *options, *sizes])


SCENARIOS = {
    "load-postgres-redis": load("postgres", visitors=1000, views=50),
    "load-postgres-redis-outage": load("postgres", "--redis-outage", visitors=400, views=50),
    "load-postgres-restart": load("postgres", "--postgres-restart", visitors=400, views=25),
    "load-postgres-direct": load("postgres", "--sink", "direct", visitors=1000, views=50),
    "load-postgres-direct-restart": load(
        "postgres", "--sink", "direct", "--postgres-restart", visitors=400, views=25
    ),
    "load-sqlite-direct": load("sqlite", visitors=200, views=50, concurrency=50, workers=2),
    "worker-sigkill-1m": ("reliability.scenario_faults", ["worker-sigkill", "--visits", "1000000"]),
    "two-beats": ("reliability.scenario_faults", ["two-beats", "--minutes", "3"]),
}


def run(name: str) -> dict:
    module, arguments = SCENARIOS[name]
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments], capture_output=True, text=True, timeout=1800
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        return {"name": name, "ok": False, "error": " | ".join(tail)}
    figures = json.loads(lines[-1])
    figures["name"] = name
    figures["ok"] = figures.get("ok", _load_ok(figures))
    return figures


def _load_ok(figures: dict) -> bool:
    return (
        figures.get("failed", 0) <= figures.get("allowed_failures", 0)
        and figures.get("transport_errors") == 0
        and figures.get("recorded_served") == figures.get("served")
        and figures.get("served") <= figures.get("raw_visits") <= figures.get("page_views")
        and figures.get("mismatched_sessions") == 0
        and figures.get("mismatched_event_sessions") == 0
        and figures.get("dashboard_events") == figures.get("events_recorded")
        and figures.get("dashboard_pageviews") == figures.get("raw_visits")
        and figures.get("dashboard_sessions") == figures.get("visitors")
        and not figures.get("leaks")
    )


def row(figures: dict) -> str:
    if "page_views" in figures:
        lost = figures["served"] - min(figures["recorded_served"], figures["served"])
        extra = max(0, figures["raw_visits"] - figures["page_views"])
        detail = (
            f"{figures['sent']} views, {figures['req_per_s']} req/s, "
            f"failed {figures['failed']} (5xx {figures['server_errors']}), "
            f"lost {lost}, counted twice {extra}, sessions off {figures['mismatched_sessions']}/"
            f"{figures['visitors']}, events {figures['events_recorded']}/"
            f"{figures['events_served']} (visitors off {figures['mismatched_event_sessions']}), "
            f"dashboard {figures['dashboard_pageviews']} views/"
            f"{figures['dashboard_sessions']} sessions, key leaks {len(figures['leaks'])}"
        )
        if figures.get("faults"):
            detail += "; " + ", ".join(figures["faults"])
    else:
        detail = figures.get("detail") or figures.get("error", "")
    return f"| {figures['name']} | {'pass' if figures['ok'] else 'FAIL'} | {detail} |"


def main(names: list[str]) -> int:
    chosen = names or list(SCENARIOS)
    print(
        f"make reliability — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{platform.machine()}, Python {platform.python_version()}",
        flush=True,
    )
    print("| scenario | result | figures |\n|---|---|---|", flush=True)
    results = []
    for name in chosen:
        figures = run(name)
        results.append(figures)
        print(row(figures), flush=True)
    return 0 if all(figures["ok"] for figures in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
