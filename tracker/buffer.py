"""Where a visit goes from the request path: one small interface, three sinks, and the drain.

Events (``tracker.events``) take the same way: each sink writes a row into one of two raw
tables (``VISITS``, ``EVENTS``), and the stream holds both, so an event gets the page view's
guarantees (nothing lost on the fault paths, nothing stored twice) with no code of its own.

- ``DirectSink``: one parameterised INSERT on the request's own database connection (SQLite,
  and the fallback of the other two).
- ``PostgresPipelineSink``: on PostgreSQL, the same INSERT on a pipelined connection of the
  sink's own, without waiting for the result; Django's connection takes over what it could not
  confirm.
- ``RedisSink``: one XADD into a Redis stream; ``drain_buffered_visits`` moves the stream into
  the database in bulk (at-least-once, idempotent on ``event_id``). If Redis is unreachable the
  visit goes through the direct sink instead: nothing is lost.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import operator
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import hiredis
import orjson
import psycopg
import redis
from django.conf import settings
from django.db import connections, models, transaction
from psycopg import pq

from tracker.models import Event, Visit

logger = logging.getLogger(__name__)

DRAIN_GROUP = "tracker-drain"
# A drainer that read entries and died leaves them pending; after this long another takes them.
RECLAIM_IDLE_MS = 60_000
# One drain call stops after this many full batches, so a flood cannot pin a worker forever.
MAX_BATCHES_PER_DRAIN = 100
FALLBACK_LOG_INTERVAL_SECONDS = 60.0


class RawTable:
    """A raw, append-only table the request path writes to: its columns, and the field name
    its rows carry in the Redis stream."""

    def __init__(self, model: type[models.Model], *, stream_field: str) -> None:
        self.model = model
        self.db_table = model._meta.db_table
        self.stream_field = stream_field
        self.fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        self.names = [field.attname for field in self.fields]
        # How the pipeline sink sends each value as text: str() for most, JSON for a JSON
        # field, NULL for a missing value of a nullable one.
        self.text_encoders = [_text_encoder(field) for field in self.fields]

    def text_params(self, row: dict) -> list[bytes | None]:
        encoders = zip(self.names, self.text_encoders, strict=True)
        return [encode(row[name]) for name, encode in encoders]

    def __repr__(self) -> str:
        return f"RawTable({self.db_table})"


def _text_encoder(field: models.Field) -> Callable[[object], bytes | None]:
    if isinstance(field, models.JSONField):
        return orjson.dumps
    if field.null:
        return lambda value: None if value is None else str(value).encode()
    return lambda value: str(value).encode()


VISITS = RawTable(Visit, stream_field="visit")
EVENTS = RawTable(Event, stream_field="event")
VISIT_FIELDS = VISITS.fields
VISIT_NAMES = VISITS.names


class VisitSink(Protocol):
    def write(self, visit: dict, table: RawTable = VISITS) -> None:
        """Store one row (a visit, or an event) durably enough that a crash of the app
        process loses nothing."""


class DirectSink:
    """Insert one visit with one raw statement on the request's existing connection.

    The ORM's per-row overhead cost ~35% of the counter page's throughput here; a prepared
    column list and one ``execute`` cost a fraction of that. On PostgreSQL, outside a
    transaction, the insert commits with ``synchronous_commit`` off for that statement only: the
    app crashing loses nothing, a crash of PostgreSQL itself can lose the last few milliseconds
    of visits (never corrupt them); every other write keeps full durability. That insert also
    goes through a plain psycopg cursor with server-side parameters: Django's cursor wrapper and
    client-side quoting cost more than a third of the sink's time. Its statement is not named
    (prepared), so a connection pooler in transaction mode is no problem. On SQLite, likewise,
    the insert goes straight to the sqlite3 connection with the values converted as Django
    stores them: Django's cursor and its fields' ``get_db_prep_save`` took half the
    sink's CPU time there (timed in place: ~105 µs per visit, ~50 µs without them).
    """

    def __init__(self, *, using: str = "default", ignore_known_events: bool = False) -> None:
        self.using = using
        self.statements = {
            table: _DirectStatements(
                table=table, using=using, ignore_known_events=ignore_known_events
            )
            for table in (VISITS, EVENTS)
        }

    def write(self, visit: dict, table: RawTable = VISITS) -> None:
        statements = self.statements[table]
        connection = connections[self.using]
        if statements.server_cursor is not None and not connection.in_atomic_block:
            # psycopg adapts the visit's values (UUID, aware datetime, str, int) itself.
            connection.ensure_connection()
            with (
                connection.wrap_database_errors,
                statements.server_cursor(connection.connection) as cursor,
            ):
                cursor.execute(
                    statements.fast_commit_sql, statements.server_params(visit)
                )
            return
        if statements.sqlite_insert_sql is not None and not connection.in_atomic_block:
            # Autocommit: sqlite3 commits the insert on its own.
            connection.ensure_connection()
            with connection.wrap_database_errors:
                connection.connection.execute(
                    statements.sqlite_insert_sql,
                    [convert(visit[name]) for name, convert in statements.sqlite_values],
                )
            return
        params = [
            field.get_db_prep_save(visit[field.attname], connection) for field in table.fields
        ]
        if connection.in_atomic_block:
            # Inside a caller's transaction: a savepoint, so a failed insert cannot poison it.
            with transaction.atomic(using=self.using), connection.cursor() as cursor:
                cursor.execute(statements.insert_sql, params)
            return
        with connection.cursor() as cursor:
            cursor.execute(statements.insert_sql, params)


class _DirectStatements:
    """The direct sink's prepared statements for one raw table."""

    def __init__(self, *, table: RawTable, using: str, ignore_known_events: bool) -> None:
        connection = connections[using]
        quote = connection.ops.quote_name
        fields = table.fields
        columns = ", ".join(quote(field.column) for field in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        names = table.names
        json_fields = [isinstance(field, models.JSONField) for field in fields]
        if any(json_fields):
            from psycopg.types.json import Jsonb

            # psycopg adapts no dict by itself; Jsonb sends it typed, as the column wants.
            def server_params(row: dict) -> list:
                return [
                    Jsonb(row[name], dumps=orjson.dumps) if is_json else row[name]
                    for name, is_json in zip(names, json_fields, strict=True)
                ]
        else:

            def server_params(row: dict) -> list:
                return [row[name] for name in names]

        self.server_params = server_params
        table = quote(table.db_table)
        # For visits that may have landed already (sent to a server that never answered).
        on_conflict = " ON CONFLICT (event_id) DO NOTHING" if ignore_known_events else ""
        self.insert_sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}){on_conflict}"  # noqa: S608
        self.fast_commit_sql = None
        self.server_cursor = None
        self.sqlite_insert_sql = None
        if connection.vendor == "sqlite":
            self.sqlite_insert_sql = self.insert_sql.replace("%s", "?")
            self.sqlite_values = sqlite_converters(connection, fields=fields)
        if connection.vendor == "postgresql":
            from psycopg import Cursor

            self.server_cursor = Cursor
            # set_config(..., true) is SET LOCAL: it ends with this statement's own transaction.
            self.fast_commit_sql = (
                "WITH durability AS (SELECT set_config('synchronous_commit', 'off', true)) "  # noqa: S608
                f"INSERT INTO {table} ({columns}) SELECT {placeholders} FROM durability"
                f"{on_conflict}"
            )


def sqlite_converters(
    connection, *, fields: list[models.Field] = VISIT_FIELDS
) -> list[tuple[str, Callable[[object], object]]]:
    """Return, per visit field, what turns its value into the one Django stores on SQLite.

    The visit's values are already of their fields' types (UUID, aware datetime, cleaned str,
    int), so only UUIDs (32 hex digits) and datetimes (naive text in the database's time zone)
    need converting; any other kind of field goes through Django's own preparation.
    """

    def keep(value: object) -> object:
        return value

    def convert(field: models.Field) -> Callable[[object], object]:
        if isinstance(field, models.UUIDField) and not connection.features.has_native_uuid_field:
            return operator.attrgetter("hex")
        if isinstance(field, models.DateTimeField):
            return connection.ops.adapt_datetimefield_value
        if isinstance(field, models.CharField | models.IntegerField):
            return keep
        if isinstance(field, models.JSONField):
            # JSON text, as Django stores it (orjson's is compact; any JSON reads back alike).
            return lambda value: orjson.dumps(value).decode()
        return functools.partial(field.get_db_prep_save, connection=connection)

    return [(field.attname, convert(field)) for field in fields]


class DeferredSink:
    """What the sinks share that send a visit on a connection of their own and read the server's
    reply later: on two cores, waiting for the reply on every page view cost more than the write.

    A visit is kept in memory until its reply confirms it, at most ``REPLIES_PER_READ`` of them
    and at most ``READ_REPLIES_AFTER_SECONDS`` (see ``RedisSink`` for why). Once they are due,
    the visits held back are released (``_release``) and their replies read all at once by the
    next write (or by ``flush``), by when they have arrived. A refused write or a broken
    connection sends the unconfirmed visits to the fallback sink. While the server is
    unreachable, visits go straight to the fallback for ``RETRY_AFTER_SECONDS`` before the next
    attempt, so a dead server costs a page view no connection timeout. Subclasses send one visit
    (``_send``), read the replies due (``_read_replies``) and drop the connection (``_disconnect``);
    a sink that holds its writes back also releases them (``_release``).
    """

    REPLIES_PER_READ = 32
    # Half the kernel's 200 ms ceiling on holding a corked socket's data.
    READ_REPLIES_AFTER_SECONDS = 0.1
    RETRY_AFTER_SECONDS = 1.0
    connection_errors: tuple[type[Exception], ...] = ()
    # Logged at most once a minute, with the reason and the count of visits that fell back.
    failure_warning = "Visit sink failed (%s); %d visits written through the fallback so far."

    def __init__(
        self, *, fallback: VisitSink, read_replies_after_seconds: float | None = None
    ) -> None:
        self.fallback = fallback
        # A test that counts what is still unconfirmed sets a long window, so that only the
        # count (REPLIES_PER_READ) decides, however slowly a loaded machine runs it.
        if read_replies_after_seconds is not None:
            self.READ_REPLIES_AFTER_SECONDS = read_replies_after_seconds
        self.fallback_count = 0
        self.unconfirmed: deque[dict] = deque()
        # Threaded servers share one middleware, hence one sink, between requests.
        self.lock = threading.Lock()
        self._retry_at = 0.0
        self._first_unconfirmed_at = 0.0
        self._released = False  # the unconfirmed visits are all sent, their replies coming
        self._last_fallback_log = -FALLBACK_LOG_INTERVAL_SECONDS
        _open_sinks.add(self)

    def write(self, visit: dict, table: RawTable = VISITS) -> None:
        with self.lock:
            now = time.monotonic()
            if now < self._retry_at:
                self._fall_back([(visit, table)], reason="unreachable a moment ago")
                return
            try:
                if self.unconfirmed and (self._released or self._replies_due(now)):
                    self._settle()
                if not self.unconfirmed:
                    self._first_unconfirmed_at = now
                self._send(visit, table)
                self.unconfirmed.append((visit, table))
                if self._replies_due(now):
                    # Their replies are read by the next write, by when they have arrived: a
                    # sync worker waiting for them here would serve nothing meanwhile.
                    self._release()
                    self._released = True
            except self.connection_errors as error:
                self._lose_connection(error, also=(visit, table))

    def _replies_due(self, now: float) -> bool:
        return (
            len(self.unconfirmed) >= self.REPLIES_PER_READ
            or now - self._first_unconfirmed_at >= self.READ_REPLIES_AFTER_SECONDS
        )

    def _settle(self) -> None:
        self._read_replies()
        self._released = False

    def flush(self) -> None:
        """Wait for the reply to every visit sent: afterwards each one is stored, here or
        through the fallback."""
        with self.lock:
            if not self.unconfirmed:
                return
            try:
                self._settle()
            except self.connection_errors as error:
                self._lose_connection(error)

    def close(self) -> None:
        self.flush()
        with self.lock:
            self._disconnect()

    def _send(self, visit: dict, table: RawTable) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Make sure every visit sent is on its way to the server (a sink holding writes back)."""

    def _read_replies(self) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError

    def _lose_connection(
        self, error: Exception, also: tuple[dict, RawTable] | None = None
    ) -> None:
        """Whatever was not confirmed may not have landed: store it through the fallback."""
        self._disconnect()
        self._retry_at = time.monotonic() + self.RETRY_AFTER_SECONDS
        unconfirmed = [*self.unconfirmed, *([also] if also else [])]
        self.unconfirmed.clear()
        self._released = False
        self._fall_back(unconfirmed, reason=str(error))

    def _fall_back(self, visits: list[tuple[dict, RawTable]], *, reason: str) -> None:
        self.fallback_count += len(visits)
        now = time.monotonic()
        if now - self._last_fallback_log >= FALLBACK_LOG_INTERVAL_SECONDS:
            self._last_fallback_log = now
            logger.warning(self.failure_warning, reason, self.fallback_count)
        for visit, table in visits:
            try:
                self.fallback.write(visit, table)
            except Exception:
                # One visit the database refuses must not keep the others from being stored.
                logger.exception(
                    "Storing %s %s through the fallback failed",
                    table.stream_field,
                    visit["event_id"],
                )


class PostgresPipelineSink(DeferredSink):
    """Insert each visit on a PostgreSQL connection of the sink's own, without waiting for it.

    Measured here per visit, the direct sink's app process spent 0.15 ms of CPU and 0.4 ms of
    wall time on its insert, this sink 0.065 ms and 0.13 ms; the counter page's throughput ratio
    with the tracker went from 0.79x to 0.99x. The connection runs in libpq's pipeline mode:
    each insert goes out at once with a sync point of its own (so a refused insert aborts no
    other) and commits with ``synchronous_commit`` off, as the direct sink's. The fallback, on
    Django's own connection, ignores event ids already stored: a visit that landed before the
    connection broke is stored once.

    Inside a caller's transaction (a test, a management command) the visit goes through the
    fallback, so that it commits or rolls back with that transaction.
    """

    connection_errors = (psycopg.Error,)
    failure_warning = (
        "Visit pipeline to PostgreSQL failed (%s); %d visits written through Django's "
        "connection so far."
    )

    def __init__(
        self, *, using: str = "default", read_replies_after_seconds: float | None = None
    ) -> None:
        super().__init__(
            fallback=DirectSink(using=using, ignore_known_events=True),
            read_replies_after_seconds=read_replies_after_seconds,
        )
        self.using = using
        self.insert_sql = {table: _pipeline_insert_sql(table) for table in (VISITS, EVENTS)}
        self.connection: psycopg.Connection | None = None  # opened by the first write
        self.keeper: ConnectionKeeper | None = None

    def write(self, visit: dict, table: RawTable = VISITS) -> None:
        if connections[self.using].in_atomic_block:
            self.fallback.write(visit, table)
        else:
            super().write(visit, table)

    def forget_connection(self) -> None:
        """Drop the connection without closing it: after a fork it is the parent's."""
        if self.connection is not None:
            _inherited_connections.append(self.connection)
        if self.keeper is not None:
            self.keeper.forget()
        self.connection = None
        self.keeper = None
        self.unconfirmed.clear()

    def _send(self, visit: dict, table: RawTable) -> None:
        if self.connection is None:
            # Django's own parameters, without its retrying through an outage: the fallback
            # waits for the database instead.
            wrapper = connections[self.using]
            connection = psycopg.connect(**wrapper.get_connection_params(), autocommit=True)
            connection.execute("SET synchronous_commit TO off")
            connection.pgconn.enter_pipeline_mode()
            self.connection = connection
            self.keeper = ConnectionKeeper(connection.pgconn.socket)
        pgconn = self.connection.pgconn
        # Text parameters, typed by the server from the columns: str() of a UUID, an aware
        # datetime, an int or a cleaned string is what PostgreSQL reads back as that value.
        params = (
            [str(visit[name]).encode() for name in VISIT_NAMES]
            if table is VISITS
            else table.text_params(visit)
        )
        pgconn.send_query_params(self.insert_sql[table], params)
        pgconn.pipeline_sync()
        pgconn.flush()  # a blocking connection: everything is sent on return

    def _read_replies(self) -> None:
        """Wait for the result of every insert sent and confirm its visit."""
        pgconn = self.connection.pgconn
        while self.unconfirmed:
            refused = None
            ended_query = False  # libpq ends a query's results with None, a sync with none
            sync = pq.ExecStatus.PIPELINE_SYNC
            while (result := pgconn.get_result()) is None or result.status != sync:
                if pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError(pgconn.get_error_message())
                if result is None:
                    if ended_query:
                        raise psycopg.OperationalError("the database sent no result")
                    ended_query = True
                    continue
                ended_query = False
                if result.status == pq.ExecStatus.FATAL_ERROR:
                    refused = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b""
            visit = self.unconfirmed.popleft()  # (row, table)
            if refused is not None:
                self._fall_back(
                    [visit], reason=f"insert refused: {refused.decode(errors='replace')}"
                )

    def _disconnect(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self.keeper is not None:
            self.keeper.release()
            self.keeper = None


# Run by a ConnectionKeeper: argv[1] is the connection's socket, stdin the worker's pipe.
_KEEPER_PROGRAM = """
import os, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C on `make run`: no traceback
sock = int(sys.argv[1])
if os.read(0, 1):
    sys.exit(0)
deadline = os.times().elapsed + 60
while os.times().elapsed < deadline:
    if not select.select([sock], [], [], 5)[0] or not os.read(sock, 65536):
        break
"""


class ConnectionKeeper:
    """A small process that holds a second handle on the pipeline's socket while the worker
    lives, and keeps it open for a few seconds after the worker dies.

    PostgreSQL ends a backend whose client it can no longer write to ("connection to client
    lost") before it reads the inserts still waiting in its socket: a SIGKILLed worker would
    lose the visits it had sent in its last moments. While the keeper holds the socket, the
    connection outlives the worker, the server runs every insert it was sent, and the keeper
    takes the replies and closes it once the server falls silent. A byte on the pipe (the
    worker closing the connection itself) makes it exit at once.
    """

    def __init__(self, sock: int) -> None:
        read_end, self._write_end = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-S", "-c", _KEEPER_PROGRAM, str(sock)],
                stdin=read_end,
                pass_fds=(sock,),
                close_fds=True,
            )
        finally:
            os.close(read_end)

    def release(self) -> None:
        """The worker closed the connection: let the keeper go, and reap it."""
        with contextlib.suppress(OSError):
            os.write(self._write_end, b"x")
        os.close(self._write_end)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()

    def forget(self) -> None:
        """In a forked child: the keeper is the parent's; drop only this copy of its pipe."""
        os.close(self._write_end)


def _pipeline_insert_sql(table: RawTable) -> bytes:
    columns = ", ".join(field.column for field in table.fields)
    placeholders = ", ".join(f"${number}" for number in range(1, len(table.fields) + 1))
    return (
        f"INSERT INTO {table.db_table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        " ON CONFLICT (event_id) DO NOTHING"
    ).encode()


def visit_to_json(visit: dict) -> bytes:
    """Encode a visit for the stream. orjson writes UUIDs and aware datetimes itself, in a tenth
    of the time the standard library's ``json`` took here (7 µs of a page view's ~40)."""
    return orjson.dumps(visit)


def visit_from_json(encoded: str | bytes) -> Visit:
    """Decode a buffered visit, written by ``visit_to_json`` or by the ``json`` module before it."""
    fields = orjson.loads(encoded)
    fields["event_id"] = uuid.UUID(fields["event_id"])
    fields["tracking_id"] = uuid.UUID(fields["tracking_id"])
    fields["visited_at"] = datetime.fromisoformat(fields["visited_at"])
    fields.setdefault("country", "")  # buffered before countries were recorded
    return Visit(**{field.attname: fields[field.attname] for field in VISIT_FIELDS})


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)  # exact: never through a float
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def event_to_json(event: dict) -> bytes:
    return orjson.dumps(event, default=_json_default)


def event_from_json(encoded: str | bytes) -> Event:
    fields = orjson.loads(encoded)
    fields["event_id"] = uuid.UUID(fields["event_id"])
    fields["tracking_id"] = uuid.UUID(fields["tracking_id"])
    fields["occurred_at"] = datetime.fromisoformat(fields["occurred_at"])
    if fields["revenue"] is not None:
        fields["revenue"] = Decimal(fields["revenue"])
    if not isinstance(fields["props"], dict):
        raise TypeError("props is not an object")
    return Event(**{name: fields[name] for name in EVENTS.names})


def rows_decoded(entries: list[tuple[str, dict]]) -> tuple[list[Visit], list[Event]]:
    """Decode stream entries into visits and events; a malformed one is logged and dropped
    rather than block the drain."""
    visits, events = [], []
    for entry_id, fields in entries:
        try:
            if "event" in fields:
                events.append(event_from_json(fields["event"]))
            else:
                visits.append(visit_from_json(fields["visit"]))
        except (KeyError, TypeError, ValueError, ArithmeticError):
            logger.error("Dropping malformed buffered row %s: %r", entry_id, fields)
    return visits, events


def visits_decoded(entries: list[tuple[str, dict]]) -> list[Visit]:
    """Decode stream entries; a malformed one is logged and dropped rather than block the drain."""
    visits = []
    for entry_id, fields in entries:
        try:
            visits.append(visit_from_json(fields["visit"]))
        except (KeyError, TypeError, ValueError):  # orjson.JSONDecodeError is a ValueError
            logger.error("Dropping malformed buffered visit %s: %r", entry_id, fields)
    return visits


# Short timeouts: a stalled Redis must cost a page view milliseconds, not seconds.
REDIS_TIMEOUTS = {"socket_connect_timeout": 0.25, "socket_timeout": 0.5}
# Linux's; macOS and Windows have none, and there the sink sends each XADD at once.
TCP_CORK = getattr(socket, "TCP_CORK", None)
TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
# Loopback's segments hold 32 KB here (TCP_MAXSEG), a network's ~1.4 KB.
CORK_MIN_SEGMENT_BYTES = 16_384
# The replies to 32 XADDs take ~1.3 KB; one read usually takes them all.
REPLY_READ_BYTES = 65536


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, **REDIS_TIMEOUTS)


class RedisSink(DeferredSink):
    """Append each visit to a Redis stream with one XADD, without waiting for its reply.

    The XADD, packed here, goes out on the sink's own connection. Waiting for Redis on every
    page view cost more than the XADD itself on two cores, where Redis competes with the web
    workers for the CPU; redis-py's per-command machinery cost as much again, and polling the
    socket for replies on every write a system call per page view. A visit that landed in the
    stream and went through the fallback as well is still stored once, since the drain's insert
    ignores known event ids.

    On loopback the connection is corked (TCP_CORK): each XADD is handed to the kernel at once,
    but sent with the others when they are released. Sent one by one, each cost the page
    view a trip through the TCP stack and Redis a wake-up: measured here in place, the
    middleware took 33 µs per page view, corked 24 µs. The kernel owns the XADDs from the first
    moment: a killed worker's socket still delivers them, only a crash of the machine itself
    can lose them, with Redis's own memory. That holds only while no reply waits unread: a
    socket closed with unread data sends a reset and drops what it still holds. The kernel
    sends corked data on its own 200 ms after the first byte, and a full segment at once, and
    Redis answers; so the XADDs are released once the oldest is 0.1 s old (or 32 of them) and
    their replies read by the next write, before it corks another; and the replies are read at
    once before the XADDs held would fill half a segment.
    """

    # The sink writes to and reads from redis-py's socket itself: its errors are the socket's too.
    connection_errors = (redis.RedisError, OSError, hiredis.ProtocolError)
    failure_warning = (
        "Redis visit buffer unreachable (%s); writing visits to the database directly (%d so far)."
    )

    def __init__(
        self,
        *,
        url: str,
        stream: str,
        fallback: VisitSink,
        read_replies_after_seconds: float | None = None,
    ) -> None:
        super().__init__(fallback=fallback, read_replies_after_seconds=read_replies_after_seconds)
        pool = redis.ConnectionPool.from_url(url, **REDIS_TIMEOUTS)
        self.connection = pool.make_connection()
        self.connection.register_connect_callback(self._on_connect)
        self.replies = hiredis.Reader()
        self.cork_bytes = 0  # how much the corked connection may hold; 0 when not corked
        self.held_bytes = 0
        self.stream = stream
        # XADD <stream> * visit <json> in the Redis protocol, all but the visit packed once;
        # an event is ``event <json>`` in the same stream.
        self.xadd_prefix = self._xadd_prefix(VISITS)
        self.event_xadd_prefix = self._xadd_prefix(EVENTS)

    def _xadd_prefix(self, table: RawTable) -> bytes:
        return b"*5\r\n" + b"".join(
            b"$%d\r\n%s\r\n" % (len(part), part)
            for part in (b"XADD", self.stream.encode(), b"*", table.stream_field.encode())
        )

    def _send(self, visit: dict, table: RawTable) -> None:
        if table is VISITS:
            encoded = visit_to_json(visit)
            prefix = self.xadd_prefix
        else:
            encoded = event_to_json(visit)
            prefix = self.event_xadd_prefix
        packed = b"%s$%d\r\n%s\r\n" % (prefix, len(encoded), encoded)
        if self.cork_bytes and self.unconfirmed and self.held_bytes + len(packed) > self.cork_bytes:
            self._read_replies()
        if self.connection._sock is None:
            self.connection.connect_check_health(check_health=False)
        send_all(self.connection._sock, packed)
        if self.cork_bytes:
            self.held_bytes += len(packed)

    def _release(self) -> None:
        """Send the corked XADDs: the kernel holds them until then."""
        if self.held_bytes:
            set_cork(self.connection._sock, on=False)
            set_cork(self.connection._sock, on=True)
            self.held_bytes = 0

    def _read_replies(self) -> None:
        """Send any XADDs still corked, then read all their replies and confirm each visit.

        The replies go through a hiredis reader of the sink's own, fed straight from the socket:
        redis-py's ``read_response`` took 4 µs a reply here, most of it per-call bookkeeping.
        """
        self._release()
        sock = self.connection._sock
        while self.unconfirmed:
            reply = self.replies.gets()
            if reply is False:  # no whole reply buffered: read what Redis has sent
                received = sock.recv(REPLY_READ_BYTES)
                if not received:
                    raise ConnectionError("Redis closed the connection")
                self.replies.feed(received)
            elif isinstance(reply, hiredis.ReplyError):
                # Redis refused this one XADD (out of memory, a wrong-typed key...).
                self._fall_back([self.unconfirmed.popleft()], reason=str(reply))
            else:
                self.unconfirmed.popleft()

    def _on_connect(self, connection: redis.Connection) -> None:
        """Once redis-py's handshake (AUTH, SELECT...) is answered, cork the new connection if
        that pays and start a fresh reader for its replies; redis-py keeps its socket in
        ``_sock``, with no public accessor."""
        self.cork_bytes = cork_if_worthwhile(connection._sock)
        self.held_bytes = 0
        self.replies = hiredis.Reader()

    def _disconnect(self) -> None:
        self.connection.disconnect()


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send data on a socket that has a timeout, in one system call where the kernel takes it all.

    ``socket.sendall`` polls such a socket before each send; ``os.write`` on its descriptor
    (non-blocking, as Python keeps it) does not. Only what the kernel refuses goes through
    ``sendall``, which waits for room within the socket's timeout.
    """
    try:
        sent = os.write(sock.fileno(), data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def cork_if_worthwhile(sock: socket.socket | None) -> int:
    """Cork a TCP connection with loopback-sized segments and return how many bytes it may hold
    unsent (half a segment: the kernel sends a full one at once); 0 if it was left uncorked.

    On loopback a send also runs the server's side of TCP and wakes it, and one segment holds a
    whole batch of ordinary visits (~380 bytes each). Elsewhere (a Unix socket, a network's
    1,500-byte segments, a platform without TCP_CORK) each write goes out at once.
    """
    if TCP_CORK is None or sock is None or sock.family not in TCP_FAMILIES:
        return 0
    segment = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    if segment < CORK_MIN_SEGMENT_BYTES:
        return 0
    set_cork(sock, on=True)
    return segment // 2


def set_cork(sock: socket.socket, *, on: bool) -> None:
    """Hold (or release) a TCP socket's small writes in the kernel."""
    sock.setsockopt(socket.IPPROTO_TCP, TCP_CORK, int(on))


# Every sink of this process that defers confirmations, so that unconfirmed visits are settled
# before it exits and before a drain in this same process (a test, a command) reads the stream.
_open_sinks: weakref.WeakSet[DeferredSink] = weakref.WeakSet()
# Connections a forked child inherited: never used nor closed there (closing would end the
# parent's session), only kept from the garbage collector.
_inherited_connections: list = []


def open_sinks() -> list[DeferredSink]:
    return list(_open_sinks)


def flush_open_sinks() -> None:
    for sink in open_sinks():
        sink.flush()


def close_open_sinks() -> None:
    """Settle and close every sink's own connection (before a test database is dropped)."""
    for sink in open_sinks():
        sink.close()


def _forget_connections_after_fork() -> None:
    for sink in open_sinks():
        if isinstance(sink, PostgresPipelineSink):
            sink.forget_connection()


atexit.register(flush_open_sinks)
os.register_at_fork(after_in_child=_forget_connections_after_fork)


def sink_from_settings() -> VisitSink:
    """Return the sink the settings ask for; called once, by the middleware's ``__init__``."""
    direct = DirectSink()
    if settings.TRACKER_SINK == "redis":
        return RedisSink(
            url=settings.REDIS_URL, stream=settings.TRACKER_REDIS_STREAM, fallback=direct
        )
    if connections["default"].vendor == "postgresql":
        return PostgresPipelineSink()
    return direct


def _stream_entries(response) -> list[tuple[str, dict]]:
    """Flatten an XREADGROUP reply (RESP2 list or RESP3 mapping) into (id, fields) pairs."""
    if isinstance(response, dict):
        return [entry for entries in response.values() for entry in entries]
    return [entry for _stream, entries in response or [] for entry in entries]


def drain_buffered_visits(*, max_batch: int = 5000, reclaim_idle_ms: int = RECLAIM_IDLE_MS) -> int:
    """Move buffered visits and events from the Redis stream into the database; return how
    many rows (visits and events together).

    At-least-once: entries are acknowledged and deleted only after their rows are inserted, and
    the insert ignores event ids already stored, so a crash, a retry or a second drainer never
    double-counts. Entries left pending by a drainer that died are reclaimed after
    ``reclaim_idle_ms``. Without Redis there is nothing to drain.
    """
    if not settings.REDIS_URL:
        return 0
    flush_open_sinks()
    client = redis_client(settings.REDIS_URL)
    stream = settings.TRACKER_REDIS_STREAM
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    try:
        client.xgroup_create(stream, DRAIN_GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise
    drained = 0
    for _batch in range(MAX_BATCHES_PER_DRAIN):
        _next_id, entries, _deleted = client.xautoclaim(
            stream, DRAIN_GROUP, consumer, min_idle_time=reclaim_idle_ms, count=max_batch
        )
        if len(entries) < max_batch:
            fresh = client.xreadgroup(
                DRAIN_GROUP, consumer, {stream: ">"}, count=max_batch - len(entries)
            )
            entries = list(entries) + _stream_entries(fresh)
        if not entries:
            break
        visits, events = rows_decoded(entries)
        Visit.objects.bulk_create(visits, batch_size=1000, ignore_conflicts=True)
        Event.objects.bulk_create(events, batch_size=1000, ignore_conflicts=True)
        entry_ids = [entry_id for entry_id, _fields in entries]
        client.xack(stream, DRAIN_GROUP, *entry_ids)
        client.xdel(stream, *entry_ids)
        drained += len(visits) + len(events)
        if len(entries) < max_batch:
            break
    return drained
