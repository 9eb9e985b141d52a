"""A request that arrives while PostgreSQL restarts waits for it instead of failing.

Runs against a PostgreSQL cluster of the test's own (initdb into a temporary folder), which it
stops and starts; the shared server is never touched.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import dj_database_url
import pytest
from django.db.utils import ConnectionHandler

from analytics_site.database import database_wait_until_available
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
def connection(cluster, django_db_blocker):
    """A persistent, health-checked connection to the test's own cluster, as the site has."""
    cluster.start_if_stopped()
    settings = dj_database_url.parse(cluster.url, conn_max_age=600, conn_health_checks=True)
    settings["OPTIONS"] = {"connect_timeout": 2}
    wrapper = ConnectionHandler({"default": settings})["default"]
    with django_db_blocker.unblock():  # not the test database: a server of the test's own
        yield wrapper
        wrapper.close()


def backend_pid(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def new_request(connection) -> None:
    """What Django does for persistent connections when a request starts."""
    connection.close_if_unusable_or_obsolete()


class DatabaseWaitTests:
    def test_wait_reopens_a_connection_broken_by_a_restart(self, cluster, connection):
        before = backend_pid(connection)
        cluster.restart()
        new_request(connection)
        assert database_wait_until_available(connection=connection, timeout=10)
        assert backend_pid(connection) != before

    def test_wait_holds_the_request_until_the_server_is_back(self, cluster, connection):
        backend_pid(connection)
        cluster.stop()
        starter = threading.Timer(1.5, cluster.start)
        starter.start()
        started = time.monotonic()
        try:
            new_request(connection)
            assert database_wait_until_available(connection=connection, timeout=30)
            waited = time.monotonic() - started
        finally:
            starter.join()
        assert waited >= 1.0
        assert backend_pid(connection) > 0

    def test_wait_gives_up_after_its_timeout(self, cluster, connection):
        backend_pid(connection)
        cluster.stop()
        started = time.monotonic()
        new_request(connection)
        assert not database_wait_until_available(connection=connection, timeout=0.5)
        assert time.monotonic() - started < 5
