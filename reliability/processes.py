"""Processes a reliability scenario starts, watches and stops itself, by PID, on 127.0.0.1.

Each helper starts one real server (gunicorn, redis-server, a Celery worker or beat) as a child of
the scenario and guarantees it is stopped when the scenario ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            return response.status == 200
    except OSError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop(process: subprocess.Popen, *, grace: float = 20.0) -> None:
    """Ask a process we started to stop (SIGTERM), then kill it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def start(command: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, close_fds=True
    )


@contextlib.contextmanager
def redis_server(*, port: int, data_dir: Path, log: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(port=port, data_dir=data_dir, log=log)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class RedisProcess:
    """Our own redis-server, with an append-only file so a stop and start keeps the buffer."""

    def __init__(self, *, port: int, data_dir: Path, log: Path) -> None:
        self.port, self.data_dir, self.log = port, data_dir, log
        self.process: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        command = [
            executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
        self.process = start(command, env=dict(os.environ), log=self.log)
        wait_until(lambda: port_open(self.port), timeout=20, what="redis-server")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


def gunicorn(*, env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen:
    command = [
        str(BIN / "gunicorn"),
        "analytics_site.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--backlog",
        "2048",
        "--timeout",
        "60",
    ]
    process = start(command, env=env, log=log)
    wait_until(
        lambda: http_ok(f"http://127.0.0.1:{port}/healthz") or process.poll() is not None,
        timeout=60,
        what="gunicorn",
    )
    if process.poll() is not None:
        raise RuntimeError(f"gunicorn exited early; see {log}")
    return process


def celery(role: str, *, env: dict[str, str], log: Path, extra: list[str] = ()) -> subprocess.Popen:
    command = [str(BIN / "celery"), "-A", "analytics_site", role, "--loglevel", "INFO", *extra]
    return start(command, env=env, log=log)


class PostgresCluster:
    """Our own PostgreSQL cluster (initdb into a temporary folder), so a test may restart it."""

    def __init__(self, *, port: int, data_dir: Path, log: Path) -> None:
        self.port, self.data_dir, self.log = port, data_dir, log
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]).parent

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        # PostgreSQL refuses to run as root; the cluster belongs to the postgres system user.
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def create(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.parent.chmod(0o755)  # the postgres user must reach its folder
        shutil.chown(self.data_dir, "postgres", "postgres")
        self.log.touch()
        shutil.chown(self.log, "postgres", "postgres")
        self._as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        self.start()

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            action,
            *extra,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def start_if_stopped(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            self.start()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop", "-m", "fast")
