"""Run the web server, a Celery worker and Celery beat together in the foreground (`make run`).

Ctrl-C (or SIGTERM) stops all three: each is asked to stop, and whatever is still running after a
grace period is killed, so nothing is left behind. If one of them exits, the others are stopped.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_SECONDS = 20
# Gunicorn's default access log names the client's address, the query string and the user
# agent: what the tracker never keeps. Time, method, path, status, size and duration only.
ACCESS_LOG_FORMAT = '%(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
BIN = Path(sys.executable).parent


def commands(host: str, port: int) -> list[list[str]]:
    celery = str(BIN / "celery")
    return [
        [
            str(BIN / "gunicorn"),
            "analytics_site.wsgi",
            # The bot lists and device data load once, in the master, and the workers share them.
            "--preload",
            "--bind",
            f"{host}:{port}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
            "--access-logformat",
            ACCESS_LOG_FORMAT,
        ],
        [celery, "-A", "analytics_site", "worker", "--loglevel", "INFO", "--concurrency", "2"],
        [celery, "-A", "analytics_site", "beat", "--loglevel", "INFO"],
    ]


def stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    options = parser.parse_args()

    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    processes = [subprocess.Popen(command) for command in commands(options.host, options.port)]
    print(
        f"Serving http://{options.host}:{options.port}/ with a Celery worker and beat; "
        "Ctrl-C stops all three.",
        flush=True,
    )
    exit_code = 0
    while not stopping:
        exited = [process for process in processes if process.poll() is not None]
        if exited:
            exit_code = exited[0].returncode or 1
            print(f"{exited[0].args[0]} exited; stopping the others.", file=sys.stderr, flush=True)
            break
        time.sleep(0.5)
    stop_all(processes)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
