"""The example systemd units in deploy/systemd start what they say: each unit's commands, run
with its environment file as systemd would, give a site that answers, a worker and a beat.

No systemd runs here, so the test reads the units itself (ExecStartPre, ExecStart,
WorkingDirectory, EnvironmentFile) and runs their commands in this checkout, on the embedded
database and broker: a test cannot own the PostgreSQL and Redis the file names. Only the paths,
the port and those two URLs are swapped; every other variable of the file is used as written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.site.test_make_run import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALL_DIR = "/srv/analytics"

pytestmark = pytest.mark.slow


def unit_service(name: str) -> dict[str, list[str]]:
    """The [Service] section of a unit, each key with all its values in order."""
    service: dict[str, list[str]] = {}
    section = ""
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, value = line.split("=", 1)
            service.setdefault(key, []).append(value)
    return service


def environment_file(path: str) -> dict[str, str]:
    variables = {}
    for line in (UNITS / Path(path).name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            variables[key] = value
    return variables


def here(command: str, *, port: int) -> list[str]:
    """The unit's command line as it runs in this checkout, on a free port."""
    command = command.replace(INSTALL_DIR, str(ROOT))
    return command.replace("127.0.0.1:8000", f"127.0.0.1:{port}").split()


def healthy(url: str) -> bool:
    # SECURE_SSL_REDIRECT is on: the proxy in front says the request came over HTTPS.
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def stop_as_systemd(process: subprocess.Popen, service: dict[str, list[str]]) -> bool:
    """Stop a unit's processes as systemd's KillMode=mixed does: SIGTERM to the main process,
    SIGKILL to whatever is left once it has exited or TimeoutStopSec has passed. Return True if
    the main process exited on SIGTERM in time."""
    assert service["KillMode"] == ["mixed"]
    timeout = float(service.get("TimeoutStopSec", ["90"])[0])
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
        clean = True
    except subprocess.TimeoutExpired:
        clean = False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return clean


class SystemdExampleTests:
    def test_units_start_web_worker_and_beat(self, tmp_path):
        port = free_port()
        units = {
            name: unit_service(f"analytics-{name}.service") for name in ("web", "worker", "beat")
        }
        for service in units.values():
            assert service["WorkingDirectory"] == [INSTALL_DIR]
            assert service["StateDirectory"] == ["analytics"]
        file_variables = environment_file(units["web"]["EnvironmentFile"][0])
        assert file_variables["DEBUG"] == "0"
        env = {
            "PATH": os.environ["PATH"],
            **file_variables,
            "ALLOWED_HOSTS": f"{file_variables['ALLOWED_HOSTS']},127.0.0.1",
            "VAR_DIR": str(tmp_path / "state"),  # systemd's StateDirectory
            "ENV_FILE": "",
        }
        del env["DATABASE_URL"], env["REDIS_URL"]
        for command in units["web"]["ExecStartPre"]:
            subprocess.run(here(command, port=port), cwd=ROOT, env=env, check=True, timeout=300)
        processes = {}
        logs = {}
        try:
            for name, service in units.items():
                logs[name] = tmp_path / f"{name}.log"
                with logs[name].open("w") as log:
                    processes[name] = subprocess.Popen(
                        here(service["ExecStart"][0], port=port),
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            wait_for(lambda: healthy(f"http://127.0.0.1:{port}/healthz"), 120, "the web unit")
            wait_for(lambda: "ready" in logs["worker"].read_text(), 120, "the worker unit")
            wait_for(lambda: "beat: Starting" in logs["beat"].read_text(), 60, "the beat unit")
            assert all(process.poll() is None for process in processes.values())
        finally:
            stopped = {
                name: stop_as_systemd(process, units[name]) for name, process in processes.items()
            }
        assert all(stopped.values()), stopped
