"""SQLite's WAL is copied back into the database file by a thread, not inside page views."""

from __future__ import annotations

import sqlite3
import threading
import time

from analytics_site.sqlite3.base import SAFETY_NET_PAGES, ensure_checkpointer
from reliability.processes import wait_until
from tests.site.test_settings import run_python


def database_with_unchecked_log(path, *, rows: int) -> sqlite3.Connection:
    """Write ``rows`` rows of 1 kB into a WAL-mode database whose writer never checkpoints,
    and return its connection: while one stays open, SQLite leaves the log as it is."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, body TEXT)")
    with connection:
        connection.executemany(
            "INSERT INTO visit (body) VALUES (?)", [("x" * 1000,) for _ in range(rows)]
        )
    return connection


class SQLiteCheckpointTests:
    def test_written_log_is_copied_into_database_file_in_background(self, tmp_path):
        database = tmp_path / "site.sqlite3"
        writer = database_with_unchecked_log(database, rows=2000)
        try:
            assert database.stat().st_size < 100_000  # 2 MB of rows, all still in the log
            ensure_checkpointer(str(database))
            assert wait_until(
                lambda: database.stat().st_size > 2_000_000,
                timeout=3,
                what="the log copied into the database file",
                interval=0.02,
            )
            assert writer.execute("SELECT count(*) FROM visit").fetchone() == (2000,)
        finally:
            writer.close()

    def test_removed_database_is_not_created_again(self, tmp_path):
        database = tmp_path / "test_db.sqlite3"
        database_with_unchecked_log(database, rows=10).close()
        ensure_checkpointer(str(database))
        for suffix in ("", "-wal", "-shm"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        time.sleep(0.6)  # three checkpoint intervals
        assert not database.exists()

    def test_in_memory_database_gets_no_checkpointer(self):
        before = {thread.name for thread in threading.enumerate()}
        ensure_checkpointer(":memory:")
        ensure_checkpointer("file:memorydb_default?mode=memory&cache=shared")
        assert {thread.name for thread in threading.enumerate()} == before

    def test_site_connections_leave_checkpoints_to_the_thread(self, tmp_path):
        result = run_python(
            "import threading, django; django.setup(); from django.db import connection; "
            "c = connection.cursor(); c.execute('PRAGMA wal_autocheckpoint'); "
            "print(c.fetchone()[0]); "
            "print(sorted(t.name.rsplit('-', 1)[0] for t in threading.enumerate()))",
            DEBUG="1",
            DATABASE_URL="",
            VAR_DIR=str(tmp_path),
        )
        assert result.returncode == 0, result.stderr
        autocheckpoint, threads = result.stdout.strip().splitlines()
        assert int(autocheckpoint) == SAFETY_NET_PAGES
        assert "sqlite-checkpoint-db.sqlite3" in threads
