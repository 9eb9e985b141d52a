"""`make run` in a fresh copy of the project: the site answers, a worker and beat are up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_copy(destination: Path) -> None:
    """Copy the project as git sees it (tracked and new files), without venv or var/."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = destination / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


class MakeRunTests:
    def test_make_run_serves_site_with_worker_and_beat(self, tmp_path):
        project = tmp_path / "project"
        fresh_copy(project)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG", "VAR_DIR"}}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        log_path = tmp_path / "make-run.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                ["make", "run", f"PORT={port}"],
                cwd=project,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            body = wait_for(lambda: fetch(f"http://127.0.0.1:{port}/"), 420, "the site")
            assert "Visit count: 1" in body
            fetch(f"http://127.0.0.1:{port}/about/?utm_source=newsletter")
            access = wait_for(
                lambda: [
                    line
                    for line in log_path.read_text().splitlines()
                    if '"GET /about/' in line
                ],
                60,
                "the access log line",
            )
            # Neither the client's address nor the query string is logged.
            assert "127.0.0.1" not in access[0] and "newsletter" not in access[0]
            log_text = log_path.read_text()
            assert "Dashboard login created" in log_text
            assert "make demo" in log_text
            ping = subprocess.run(
                [
                    str(project / ".venv/bin/python"),
                    "-c",
                    "from analytics_site.celery import ping; print(ping.delay().get(timeout=60))",
                ],
                cwd=project,
                env={**env, "DEBUG": "1"},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert ping.stdout.strip().endswith("pong"), ping.stderr
            wait_for(lambda: "beat: Starting" in log_path.read_text(), 60, "celery beat")
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise

        # All three stop after Ctrl-C, leaving nothing behind.
        def all_stopped() -> bool:
            found = subprocess.run(
                ["pgrep", "-f", str(project / ".venv/bin/")], capture_output=True, text=True
            )
            return found.stdout.strip() == ""

        wait_for(all_stopped, 60, "the web server, worker and beat to stop")

        # The checkout now works for manage.py with no environment (make wrote .env), and
        # `make demo` gives the dashboard a month of traffic with returning visitors.
        bare = {k: v for k, v in env.items() if k not in {"REDIS_URL", "ENV_FILE"}}
        demo = subprocess.run(
            ["make", "demo"], cwd=project, env=bare, capture_output=True, text=True, timeout=600
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        counted = subprocess.run(
            [
                str(project / ".venv/bin/python"),
                "manage.py",
                "shell",
                "-c",
                "from tracker.models import TrackedSession as T, VisitSummary as V; "
                "print(T.objects.count(), V.objects.count(), "
                "T.objects.filter(visits__gt=1).count())",
            ],
            cwd=project,
            env=bare,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert counted.returncode == 0, counted.stderr
        visitors, visits, returning = map(int, counted.stdout.split()[-3:])
        assert visitors == 3000
        assert visits > visitors
        assert returning > visitors // 5
