"""A request that needs the database while PostgreSQL restarts waits for it instead of failing.

Runs against a PostgreSQL cluster of the test's own (initdb into a temporary folder), which it
stops and starts; the shared server is never touched. The connection is built like the site's:
our backend, persistent, health-checked.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import dj_database_url
import pytest
from django.db import OperationalError
from django.db.utils import ConnectionHandler

from reliability import processes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    # Not under pytest's tmp_path: the postgres user must reach the folder.
    with tempfile.TemporaryDirectory(prefix="own-postgres-") as folder:
        cluster = processes.PostgresCluster(
            port=processes.free_port(),
            data_dir=Path(folder) / "data",
            log=Path(folder) / "postgres.log",
        )
        cluster.create()
        yield cluster
        cluster.stop()


@pytest.fixture
def connection(cluster, django_db_blocker, settings):
    settings.DATABASE_WAIT_SECONDS = 30
    cluster.start_if_stopped()
    database = dj_database_url.parse(cluster.url, conn_max_age=600, conn_health_checks=True)
    database["ENGINE"] = "analytics_site.postgresql"
    database["OPTIONS"] = {"connect_timeout": 2}
    wrapper = ConnectionHandler({"default": database})["default"]
    with django_db_blocker.unblock():  # not the test database: a server of the test's own
        yield wrapper
        wrapper.close()


def backend_pid(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def new_request(connection) -> None:
    """What Django does to persistent connections when a request starts."""
    connection.close_if_unusable_or_obsolete()


class DatabaseWaitTests:
    def test_connection_broken_by_a_restart_is_replaced(self, cluster, connection):
        before = backend_pid(connection)
        cluster.restart()
        new_request(connection)
        assert backend_pid(connection) != before

    def test_request_during_the_restart_waits_for_the_server(self, cluster, connection):
        backend_pid(connection)
        cluster.stop()
        starter = threading.Timer(1.5, cluster.start)
        starter.start()
        started = time.monotonic()
        try:
            new_request(connection)
            pid = backend_pid(connection)
            waited = time.monotonic() - started
        finally:
            starter.join()
        assert pid > 0
        assert waited >= 1.0

    def test_request_gives_up_after_the_wait(self, cluster, connection, settings):
        settings.DATABASE_WAIT_SECONDS = 0.5
        backend_pid(connection)
        cluster.stop()
        started = time.monotonic()
        new_request(connection)
        with pytest.raises(OperationalError):
            backend_pid(connection)
        assert time.monotonic() - started < 5
