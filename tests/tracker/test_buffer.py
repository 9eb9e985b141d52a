from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import signal
import socket
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client

from reliability.processes import wait_until
from tests.tracker.user_agents import BROWSER_UA
from tracker.buffer import (
    DRAIN_GROUP,
    EVENTS,
    DirectSink,
    PostgresPipelineSink,
    RedisSink,
    drain_buffered_visits,
    event_to_json,
    flush_open_sinks,
    redis_client,
    visit_to_json,
)
from tracker.models import Event, Visit
from tracker.tasks import drain_visit_buffer


def a_visit(**overrides) -> dict:
    return {
        "event_id": uuid.uuid4(),
        "tracking_id": uuid.uuid4(),
        "visited_at": datetime.now(UTC),
        "path": "/",
        "utm_source": "",
        "utm_medium": "",
        "utm_campaign": "",
        "referrer_host": "",
        "browser": "Chrome",
        "os": "Linux",
        "device": "desktop",
        "country": "",
        "status_code": 200,
        "response_ms": 3,
        **overrides,
    }


def an_event(**overrides) -> dict:
    return {
        "event_id": uuid.uuid4(),
        "tracking_id": uuid.uuid4(),
        "occurred_at": datetime.now(UTC),
        "name": "signup",
        "path": "/",
        "props": {},
        "revenue": None,
        **overrides,
    }


def an_event_with_every_field() -> dict:
    """An event whose every field differs from the defaults: props, revenue, emoji, micros."""
    return an_event(
        name="checkout: paid/ok",
        path="/caf\u00e9/\U0001f600",
        props={"plan": "pro \u00e9t\u00e9", "seats": "12", "quote": 'say "hi"'},
        revenue=Decimal("1234.5678"),
        occurred_at=datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC),
    )


def stored_events() -> dict:
    return {row["event_id"]: row for row in Event.objects.values(*an_event())}


def a_visit_with_every_field() -> dict:
    """A visit whose every field differs from the defaults, microseconds and emoji included."""
    return a_visit(
        path="/caf\u00e9/\U0001f600",
        utm_source="news",
        utm_medium="email",
        utm_campaign="spring",
        referrer_host="example.org",
        device="mobile",
        country="NZ",
        status_code=404,
        response_ms=70_000,
        visited_at=datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC),
    )


# For the tests that count how many writes are still unconfirmed: only the count of writes
# (REPLIES_PER_READ) releases them then, however slowly a loaded machine runs the test.
NO_TIMER = 3600.0


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def redis_stream(redis_url, settings):
    """A stream of this test's own in the configured Redis DB, deleted afterwards."""
    stream = f"tracker:test:{uuid.uuid4().hex}"
    settings.REDIS_URL = redis_url
    settings.TRACKER_SINK = "redis"
    settings.TRACKER_REDIS_STREAM = stream
    yield stream
    redis_client(redis_url).delete(stream)


@pytest.mark.django_db
class DirectSinkTests:
    def test_direct_sink_writes_one_row(self):
        visit = a_visit(path="/caf\u00e9/\U0001f600")
        DirectSink().write(visit)
        stored = Visit.objects.get()
        assert stored.event_id == visit["event_id"]
        assert stored.path == visit["path"]
        assert stored.visited_at == visit["visited_at"]

    def test_direct_sink_failure_keeps_outer_transaction(self):
        visit = a_visit()
        sink = DirectSink()
        sink.write(visit)
        with pytest.raises(IntegrityError):
            sink.write(visit)
        # The caller's transaction is still usable after the failed insert.
        with transaction.atomic():
            assert Visit.objects.count() == 1


@pytest.mark.django_db(transaction=True)
class DirectSinkAutocommitTests:
    """Outside a transaction, as on the request path (PostgreSQL takes its own cursor there)."""

    def test_direct_sink_autocommit_stores_every_field(self):
        visit = a_visit_with_every_field()
        DirectSink().write(visit)
        stored = Visit.objects.values(*visit).get()
        assert stored == visit

    def test_direct_sink_autocommit_stores_what_the_orm_stores(self):
        """Raw columns, as SQL sees them: on SQLite the sink converts the values itself, and a
        datetime stored as other text would fall out of every range query on it."""
        visit = a_visit_with_every_field()
        DirectSink().write(visit)
        Visit.objects.create(**{**visit, "event_id": uuid.uuid4()})
        columns = [field.column for field in Visit._meta.concrete_fields]
        columns = [column for column in columns if column not in {"id", "event_id"}]
        as_text = ", ".join(f"CAST({column} AS TEXT)" for column in columns)  # no converters
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {as_text} FROM tracker_visit ORDER BY id")  # noqa: S608
            by_sink, by_orm = cursor.fetchall()
        assert by_sink == by_orm

    def test_direct_sink_autocommit_duplicate_event_is_a_database_error(self):
        visit = a_visit()
        sink = DirectSink()
        sink.write(visit)
        with pytest.raises(IntegrityError):
            sink.write(visit)
        sink.write(a_visit())
        assert Visit.objects.count() == 2


@pytest.fixture
def pipeline_sink():
    """A PostgreSQL pipeline sink of the test's own, closed afterwards; PostgreSQL only."""
    if connection.vendor != "postgresql":
        pytest.skip("the pipeline sink is PostgreSQL's")
    sink = PostgresPipelineSink()
    yield sink
    sink.close()


def sink_backend_pid(sink: PostgresPipelineSink) -> int:
    return sink.connection.info.backend_pid


def wait_for_visits(count: int, *, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while Visit.objects.count() < count:
        assert time.monotonic() < deadline, f"fewer than {count} visits committed"
        time.sleep(0.01)


def write_and_get_killed(sink, *, visits: int, before=None, path_padding: str = "") -> None:
    """Fork a web worker that runs ``before`` (if given), then writes ``visits`` visits (paths
    /killed/N/) through the sink and is SIGKILLed at once, before it reads their replies."""
    pid = os.fork()
    if pid == 0:
        try:
            if before is not None:
                before()
            for number in range(visits):
                sink.write(a_visit(path=f"/killed/{number}/{path_padding}"))
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)


def wait_for_stream_length(redis_url: str, stream: str, length: int) -> int:
    """Return the stream's length once it reaches ``length`` (within 2 s)."""
    admin = redis_client(redis_url)
    wait_until(
        lambda: admin.xlen(stream) >= length,
        timeout=2,
        what=f"{length} entries in the stream",
        interval=0.02,
    )
    return admin.xlen(stream)


@pytest.mark.django_db(transaction=True)
class PostgresPipelineSinkTests:
    """Outside a transaction, as on the request path, where the inserts are pipelined."""

    def test_pipelined_writes_all_land_with_every_field(self, pipeline_sink):
        visits = [a_visit(path=f"/page/{number}/") for number in range(100)]
        visits.append(a_visit_with_every_field())
        for visit in visits:
            pipeline_sink.write(visit)
            assert len(pipeline_sink.unconfirmed) <= PostgresPipelineSink.REPLIES_PER_READ
        pipeline_sink.flush()
        assert len(pipeline_sink.unconfirmed) == 0
        assert pipeline_sink.fallback_count == 0
        stored = {row["event_id"]: row for row in Visit.objects.values(*visits[0])}
        assert stored == {visit["event_id"]: visit for visit in visits}

    def test_inside_a_transaction_the_visit_rolls_back_with_it(self, pipeline_sink):
        with pytest.raises(RuntimeError), transaction.atomic():
            pipeline_sink.write(a_visit())
            assert Visit.objects.count() == 1
            raise RuntimeError("roll back")
        pipeline_sink.flush()
        assert Visit.objects.count() == 0

    def test_unanswered_inserts_that_landed_are_stored_once(self, monkeypatch, caplog):
        """The connection breaks after the inserts committed, before their results arrive."""
        pipeline_sink = PostgresPipelineSink(read_replies_after_seconds=NO_TIMER)
        visits = [a_visit() for _ in range(5)]
        for visit in visits:
            pipeline_sink.write(visit)
        wait_for_visits(5)

        def replies_lost():
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(pipeline_sink, "_read_replies", replies_lost)
        with caplog.at_level(logging.WARNING, logger="tracker.buffer"):
            pipeline_sink.flush()
        assert pipeline_sink.fallback_count == 5  # all sent again, through Django's connection
        assert "through the fallback failed" not in caplog.text  # known event ids are skipped
        assert pipeline_sink.connection is None
        assert sorted(Visit.objects.values_list("event_id", flat=True)) == sorted(
            visit["event_id"] for visit in visits
        )
        pipeline_sink.close()

    def test_terminated_backend_loses_no_visit_and_reconnects(self, pipeline_sink, monkeypatch):
        visits = [a_visit() for _ in range(5)]
        for visit in visits:
            pipeline_sink.write(visit)
        wait_for_visits(5)
        old_backend = sink_backend_pid(pipeline_sink)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [old_backend])
        visits += [a_visit() for _ in range(3)]  # into the dead connection, then the fallback
        for visit in visits[5:]:
            pipeline_sink.write(visit)
        pipeline_sink.flush()
        assert pipeline_sink.fallback_count >= 3
        assert sorted(Visit.objects.values_list("event_id", flat=True)) == sorted(
            visit["event_id"] for visit in visits
        )
        # After the pause the sink connects again and pipelines as before.
        fallbacks = pipeline_sink.fallback_count
        monkeypatch.setattr(pipeline_sink, "_retry_at", 0.0)
        pipeline_sink.write(a_visit())
        pipeline_sink.flush()
        assert sink_backend_pid(pipeline_sink) != old_backend
        assert pipeline_sink.fallback_count == fallbacks
        assert Visit.objects.count() == 9

    def test_refused_insert_is_logged_and_others_still_land(self, pipeline_sink, caplog):
        refused = a_visit(status_code=-1)  # violates the column's check constraint
        with caplog.at_level(logging.WARNING, logger="tracker.buffer"):
            pipeline_sink.write(a_visit())
            pipeline_sink.write(refused)
            pipeline_sink.write(a_visit())
            pipeline_sink.flush()
            for _ in range(3):
                pipeline_sink.write(a_visit())
            pipeline_sink.flush()
        assert Visit.objects.count() == 5
        assert pipeline_sink.fallback_count == 1
        assert "insert refused" in caplog.text
        assert f"Storing visit {refused['event_id']} through the fallback failed" in caplog.text

    def test_forked_child_does_not_end_the_parents_connection(self, pipeline_sink):
        pipeline_sink.write(a_visit())
        pipeline_sink.flush()
        parent_backend = sink_backend_pid(pipeline_sink)
        pid = os.fork()
        if pid == 0:  # the child writes on a connection of its own, then closes it
            status = 1
            try:
                pipeline_sink.write(a_visit())
                pipeline_sink.close()
                status = 0 if pipeline_sink.fallback_count == 0 else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        pipeline_sink.write(a_visit())
        pipeline_sink.flush()
        assert sink_backend_pid(pipeline_sink) == parent_backend
        assert pipeline_sink.fallback_count == 0
        assert Visit.objects.count() == 3

    def test_worker_killed_before_reading_results_loses_no_visit_sent(self, pipeline_sink):
        """What a worker sent is in the kernel's hands: SIGKILL does not take it back."""
        write_and_get_killed(pipeline_sink, visits=5)
        wait_for_visits(5)
        assert Visit.objects.filter(path__startswith="/killed/").count() == 5

    def test_worker_killed_with_many_inserts_in_flight_loses_none(self, pipeline_sink):
        """The server reads the last inserts after the worker is gone: its keeper holds the
        connection open until they have run (without it PostgreSQL drops them)."""
        write_and_get_killed(pipeline_sink, visits=300)
        wait_for_visits(300)
        assert Visit.objects.filter(path__startswith="/killed/").count() == 300

    def test_closing_the_connection_lets_its_keeper_go(self, pipeline_sink):
        pipeline_sink.write(a_visit())
        keeper = pipeline_sink.keeper._process
        assert keeper.poll() is None  # alive beside the connection
        pipeline_sink.close()
        assert keeper.returncode == 0  # told to go, and reaped
        assert Visit.objects.count() == 1

    def test_middleware_pipelines_page_views_on_postgresql(self, pipeline_sink, settings):
        settings.TRACKER_SINK = "direct"
        client = Client(headers={"user-agent": BROWSER_UA})
        for _ in range(40):
            assert client.get("/").status_code == 200
        flush_open_sinks()
        assert Visit.objects.count() == 40
        assert Visit.objects.values("tracking_id").distinct().count() == 1


@pytest.mark.django_db
class RedisFallbackTests:
    def test_unreachable_redis_falls_back_to_database(self, settings, caplog):
        settings.REDIS_URL = closed_port_url()
        settings.TRACKER_SINK = "redis"
        client = Client(headers={"user-agent": BROWSER_UA})
        with caplog.at_level(logging.WARNING, logger="tracker.buffer"):
            for _ in range(5):
                assert client.get("/").status_code == 200
        assert Visit.objects.count() == 5
        # Logged once, not once per visit.
        assert caplog.text.count("Redis visit buffer unreachable") == 1

    def test_unreachable_redis_sink_counts_fallbacks(self):
        sink = RedisSink(url=closed_port_url(), stream="unused", fallback=DirectSink())
        for _ in range(3):
            sink.write(a_visit())
        assert sink.fallback_count == 3
        assert Visit.objects.count() == 3


@pytest.mark.django_db
class RedisSinkPipelineTests:
    """The sink sends each XADD without waiting for its reply; no visit may be lost by that."""

    def test_pipelined_writes_all_land_in_stream(self, redis_stream, redis_url):
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        for _ in range(200):
            sink.write(a_visit())
            assert len(sink.unconfirmed) <= RedisSink.REPLIES_PER_READ
        sink.flush()
        assert len(sink.unconfirmed) == 0
        assert redis_client(redis_url).xlen(redis_stream) == 200
        assert sink.fallback_count == 0
        assert Visit.objects.count() == 0

    def test_unanswered_xadds_of_a_dropped_connection_go_to_database(self, redis_stream, redis_url):
        """Redis drops the connection before running the XADDs it was sent: they are stored
        directly, and the stream holds only what Redis confirmed."""
        sink = RedisSink(
            url=redis_url,
            stream=redis_stream,
            fallback=DirectSink(),
            read_replies_after_seconds=NO_TIMER,
        )
        sink.write(a_visit())
        sink.flush()
        admin = redis_client(redis_url)
        sink_address = "{}:{}".format(*sink.connection._sock.getsockname())
        held = [a_visit() for _ in range(3)]
        admin.client_pause(5000, all=False)  # write commands wait, unanswered
        try:
            for visit in held:
                sink.write(visit)
            assert len(sink.unconfirmed) == 3
            admin.client_kill(sink_address)
        finally:
            admin.client_unpause()
        sink.flush()
        assert admin.xlen(redis_stream) == 1
        stored = set(Visit.objects.values_list("event_id", flat=True))
        assert stored == {visit["event_id"] for visit in held}
        assert sink.fallback_count == 3
        # A second later the sink reconnects, and reads the new connection's replies afresh.
        time.sleep(RedisSink.RETRY_AFTER_SECONDS)
        for _ in range(RedisSink.REPLIES_PER_READ + 1):
            sink.write(a_visit())
        sink.flush()
        assert admin.xlen(redis_stream) == RedisSink.REPLIES_PER_READ + 2
        assert sink.fallback_count == 3

    def test_refused_xadd_goes_to_database_and_sink_keeps_working(self, redis_stream, redis_url):
        admin = redis_client(redis_url)
        admin.set(redis_stream, "not a stream")  # XADD now answers WRONGTYPE
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        refused = a_visit()
        sink.write(refused)
        sink.flush()
        assert list(Visit.objects.values_list("event_id", flat=True)) == [refused["event_id"]]
        admin.delete(redis_stream)
        sink.write(a_visit())
        sink.flush()
        assert admin.xlen(redis_stream) == 1
        assert sink.fallback_count == 1

    def test_corked_xadds_reach_stream_without_a_flush(self, redis_stream, redis_url):
        """Fewer visits than a read of replies: the kernel sends them on its own, in 200 ms."""
        sink = RedisSink(
            url=redis_url,
            stream=redis_stream,
            fallback=DirectSink(),
            read_replies_after_seconds=NO_TIMER,
        )
        for _ in range(3):
            sink.write(a_visit())
        assert len(sink.unconfirmed) == 3
        assert wait_for_stream_length(redis_url, redis_stream, 3) == 3

    def test_a_full_batch_is_sent_at_once_and_confirmed_by_the_next_write(
        self, redis_stream, redis_url
    ):
        sink = RedisSink(
            url=redis_url,
            stream=redis_stream,
            fallback=DirectSink(),
            read_replies_after_seconds=NO_TIMER,
        )
        batch = RedisSink.REPLIES_PER_READ
        for _ in range(batch):
            sink.write(a_visit())
        assert len(sink.unconfirmed) == batch  # sent, replies not read yet
        # Released by the count, not left to the kernel's 200 ms: nothing is held corked.
        assert sink._released
        assert sink.held_bytes == 0
        assert wait_for_stream_length(redis_url, redis_stream, batch) == batch
        sink.write(a_visit())
        assert len(sink.unconfirmed) == 1
        assert sink.fallback_count == 0

    def test_worker_killed_after_a_released_batch_and_more_writes_loses_none(
        self, redis_stream, redis_url
    ):
        """A batch released, its replies arrived unread, then more XADDs corked and SIGKILL."""
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        batch = RedisSink.REPLIES_PER_READ

        def one_batch_released_and_answered():
            for _ in range(batch):
                sink.write(a_visit())
            wait_for_stream_length(redis_url, redis_stream, batch)
            time.sleep(0.05)  # Redis's replies land in the worker's socket, unread

        write_and_get_killed(sink, visits=5, before=one_batch_released_and_answered)
        assert wait_for_stream_length(redis_url, redis_stream, batch + 5) == batch + 5

    def test_worker_killed_with_corked_xadds_loses_none(self, redis_stream, redis_url):
        """The XADDs a worker handed to the kernel reach Redis after SIGKILL."""
        write_and_get_killed(
            RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink()), visits=5
        )
        assert wait_for_stream_length(redis_url, redis_stream, 5) == 5
        assert drain_buffered_visits() == 5
        assert Visit.objects.filter(path__startswith="/killed/").count() == 5

    def test_worker_killed_after_redis_answered_corked_xadds_loses_none(
        self, redis_stream, redis_url
    ):
        """The kernel sends corked XADDs on its own after 200 ms and Redis answers them: a
        socket closed with those replies unread resets the connection, dropping what it still
        holds, unless the worker read them before corking more."""
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())

        def three_sent_by_the_kernel_and_answered():
            for _ in range(3):
                sink.write(a_visit())
            wait_for_stream_length(redis_url, redis_stream, 3)
            time.sleep(0.05)  # Redis's replies land in the worker's socket, unread

        write_and_get_killed(sink, visits=5, before=three_sent_by_the_kernel_and_answered)
        assert wait_for_stream_length(redis_url, redis_stream, 8) == 8

    def test_worker_killed_after_corking_more_than_a_segment_loses_none(
        self, redis_stream, redis_url
    ):
        """The kernel sends a full segment at once, corked or not, and Redis answers it."""
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        # 30 visits of ~1.5 KB: more than a loopback segment (32 KB) in all.
        write_and_get_killed(sink, visits=30, path_padding="\u00e9" * 480)
        assert wait_for_stream_length(redis_url, redis_stream, 30) == 30
        assert drain_buffered_visits() == 30

    def test_drain_in_same_process_sees_unconfirmed_visits(self, redis_stream, redis_url):
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        for _ in range(5):
            sink.write(a_visit())
        assert drain_buffered_visits() == 5
        assert len(sink.unconfirmed) == 0


@pytest.mark.django_db
class RedisDrainTests:
    def test_drain_exactly_once(self, redis_stream, redis_url):
        client = Client(headers={"user-agent": BROWSER_UA})
        for path in ["/", "/about/", "/"]:
            assert client.get(path).status_code == 200
        assert Visit.objects.count() == 0
        flush_open_sinks()
        assert redis_client(redis_url).xlen(redis_stream) == 3
        # The about page's cookie_tested event, recorded inside the test's transaction, went
        # into it (the database) rather than the stream.
        assert list(Event.objects.values_list("name", "path")) == [("cookie_tested", "/about/")]
        assert drain_buffered_visits() == 3
        assert Visit.objects.count() == 3
        assert drain_buffered_visits() == 0
        assert Visit.objects.count() == 3
        assert Event.objects.count() == 1
        assert redis_client(redis_url).xlen(redis_stream) == 0

    def test_drain_stores_every_field(self, redis_stream, redis_url):
        visit = a_visit_with_every_field()
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        sink.write(visit)
        assert drain_buffered_visits() == 1
        assert Visit.objects.values(*visit).get() == visit

    def test_drain_reads_entries_of_the_earlier_json_encoding(self, redis_stream, redis_url):
        """Entries buffered before an upgrade, by the standard library's json, still drain."""
        visit = a_visit_with_every_field()
        earlier = json.dumps(visit, default=str, separators=(",", ":"))
        redis_client(redis_url).xadd(redis_stream, {"visit": earlier})
        assert drain_buffered_visits() == 1
        assert Visit.objects.values(*visit).get() == visit

    def test_drain_reads_entries_buffered_before_countries(self, redis_stream, redis_url):
        visit = a_visit_with_every_field()
        del visit["country"]
        redis_client(redis_url).xadd(redis_stream, {"visit": visit_to_json(visit)})
        assert drain_buffered_visits() == 1
        assert Visit.objects.values(*visit, "country").get() == {**visit, "country": ""}

    def test_drain_duplicate_event_not_double_counted(self, redis_stream, redis_url):
        """A retried XADD (or a drain that died before XACK) stores the event only once."""
        visit = a_visit()
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        sink.write(visit)
        sink.write(visit)
        DirectSink().write(a_visit(event_id=uuid.uuid4()))
        assert drain_buffered_visits() == 2
        assert Visit.objects.filter(event_id=visit["event_id"]).count() == 1
        assert Visit.objects.count() == 2

    def test_drain_reclaims_entries_of_dead_drainer(self, redis_stream, redis_url):
        client = redis_client(redis_url)
        for _ in range(4):
            client.xadd(redis_stream, {"visit": visit_to_json(a_visit())})
        client.xgroup_create(redis_stream, DRAIN_GROUP, id="0", mkstream=True)
        # A drainer reads two entries and dies before inserting or acknowledging them.
        client.xreadgroup(DRAIN_GROUP, "dead-drainer", {redis_stream: ">"}, count=2)
        assert drain_buffered_visits(reclaim_idle_ms=0) == 4
        assert Visit.objects.count() == 4
        assert client.xpending(redis_stream, DRAIN_GROUP)["pending"] == 0

    def test_drain_small_batches_drain_everything(self, redis_stream, redis_url):
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        for _ in range(25):
            sink.write(a_visit())
        assert drain_buffered_visits(max_batch=10) == 25
        assert Visit.objects.count() == 25

    def test_drain_malformed_entry_dropped(self, redis_stream, redis_url):
        client = redis_client(redis_url)
        client.xadd(redis_stream, {"visit": "{not json"})
        client.xadd(redis_stream, {"visit": visit_to_json(a_visit())})
        assert drain_buffered_visits() == 1
        assert client.xlen(redis_stream) == 0

    def test_drain_without_redis_does_nothing(self, settings):
        settings.REDIS_URL = ""
        assert drain_buffered_visits() == 0

    def test_drain_task_registered_and_drains(self, redis_stream, redis_url):
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        sink.write(a_visit())
        assert drain_visit_buffer.name == "tracker.tasks.drain_visit_buffer"
        assert drain_visit_buffer.apply().get() == 1
        assert Visit.objects.count() == 1


def drain_if_buffered() -> None:
    from django.conf import settings

    if settings.TRACKER_SINK == "redis":
        drain_buffered_visits()
    flush_open_sinks()


@pytest.mark.django_db(transaction=True)
class ConcurrencyTests:
    def test_concurrent_requests_exact_visit_count(self, live_server, settings):
        """Threads with their own cookie jars and threads sharing one session, all at once."""
        if settings.TRACKER_SINK == "redis":
            redis_client(settings.REDIS_URL).delete(settings.TRACKER_REDIS_STREAM)
        own_jar_threads, shared_threads, requests_each = 8, 4, 25

        def opener(cookie: str | None = None):
            """Its own cookie jar, or a fixed cookie shared with other threads."""
            if cookie:
                built = urllib.request.build_opener()
                built.addheaders = [("User-Agent", BROWSER_UA), ("Cookie", cookie)]
                return built
            jar = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
            built = urllib.request.build_opener(jar)
            built.addheaders = [("User-Agent", BROWSER_UA)]
            return built

        first = opener()
        first.open(f"{live_server.url}/").read()
        jar = next(
            handler.cookiejar
            for handler in first.handlers
            if isinstance(handler, urllib.request.HTTPCookieProcessor)
        )
        shared_cookie = "sessionid=" + next(
            cookie.value for cookie in jar if cookie.name == "sessionid"
        )
        errors: list[Exception] = []

        def browse(cookie: str | None) -> None:
            visitor = opener(cookie)
            try:
                for number in range(requests_each):
                    path = "/" if number % 2 else "/about/"
                    visitor.open(f"{live_server.url}{path}", timeout=60).read()
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=browse, args=(None,)) for _ in range(own_jar_threads)]
        threads += [
            threading.Thread(target=browse, args=(shared_cookie,)) for _ in range(shared_threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        drain_if_buffered()
        expected = 1 + (own_jar_threads + shared_threads) * requests_each
        assert Visit.objects.count() == expected
        # One tracked session per own jar, plus the shared one.
        assert Visit.objects.values("tracking_id").distinct().count() == own_jar_threads + 1
        if settings.TRACKER_SINK == "redis":
            redis_client(settings.REDIS_URL).delete(settings.TRACKER_REDIS_STREAM)


@pytest.mark.django_db
class EventDirectSinkTests:
    def test_direct_sink_stores_events_with_every_field(self):
        events = [an_event(), an_event_with_every_field(), an_event(revenue=Decimal("-5"))]
        for event in events:
            DirectSink().write(event, EVENTS)
        assert stored_events() == {event["event_id"]: event for event in events}
        assert Visit.objects.count() == 0

    def test_direct_sink_inside_transaction_rolls_back_events(self):
        with pytest.raises(RuntimeError), transaction.atomic():
            DirectSink().write(an_event(), EVENTS)
            raise RuntimeError("roll back")
        assert Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)
class EventDirectSinkAutocommitTests:
    def test_direct_sink_autocommit_stores_events_with_every_field(self):
        events = [an_event(), an_event_with_every_field()]
        for event in events:
            DirectSink().write(event, EVENTS)
        assert stored_events() == {event["event_id"]: event for event in events}

    def test_direct_sink_autocommit_duplicate_event_id_is_refused(self):
        event = an_event()
        DirectSink().write(event, EVENTS)
        with pytest.raises(IntegrityError):
            DirectSink().write(event, EVENTS)
        DirectSink(ignore_known_events=True).write(event, EVENTS)
        assert Event.objects.count() == 1


@pytest.mark.django_db(transaction=True)
class EventPipelineSinkTests:
    """Events share the page views' pipelined connection on PostgreSQL."""

    def test_events_and_visits_interleaved_all_land(self, pipeline_sink):
        events = [an_event(props={"n": str(number)}) for number in range(40)]
        events.append(an_event_with_every_field())
        visits = [a_visit() for _ in range(41)]
        for event, visit in zip(events, visits, strict=True):
            pipeline_sink.write(visit)
            pipeline_sink.write(event, EVENTS)
        pipeline_sink.flush()
        assert pipeline_sink.fallback_count == 0
        assert stored_events() == {event["event_id"]: event for event in events}
        assert Visit.objects.count() == 41

    def test_inside_a_transaction_the_event_rolls_back_with_it(self, pipeline_sink):
        with pytest.raises(RuntimeError), transaction.atomic():
            pipeline_sink.write(an_event(), EVENTS)
            assert Event.objects.count() == 1
            raise RuntimeError("roll back")
        pipeline_sink.flush()
        assert Event.objects.count() == 0

    def test_terminated_backend_loses_no_event(self, pipeline_sink):
        events = [an_event() for _ in range(5)]
        for event in events:
            pipeline_sink.write(event, EVENTS)
        pipeline_sink.flush()
        with connection.cursor() as cursor:
            backend = sink_backend_pid(pipeline_sink)
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [backend])
        events += [an_event() for _ in range(3)]
        for event in events[5:]:
            pipeline_sink.write(event, EVENTS)
        pipeline_sink.flush()
        assert sorted(Event.objects.values_list("event_id", flat=True)) == sorted(
            event["event_id"] for event in events
        )

    def test_unanswered_event_inserts_that_landed_are_stored_once(self, monkeypatch):
        sink = PostgresPipelineSink(read_replies_after_seconds=NO_TIMER)
        events = [an_event() for _ in range(5)]
        for event in events:
            sink.write(event, EVENTS)
        deadline = time.monotonic() + 10
        while Event.objects.count() < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)

        def replies_lost():
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(sink, "_read_replies", replies_lost)
        sink.flush()
        assert sink.fallback_count == 5
        assert Event.objects.count() == 5
        sink.close()


@pytest.mark.django_db
class EventRedisSinkTests:
    def test_events_through_the_stream_drain_with_every_field(self, redis_stream, redis_url):
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        events = [an_event(), an_event_with_every_field()]
        for event in events:
            sink.write(event, EVENTS)
            sink.write(a_visit())
        assert Event.objects.count() == 0
        assert drain_buffered_visits() == 4
        assert stored_events() == {event["event_id"]: event for event in events}
        assert Visit.objects.count() == 2

    def test_unreachable_redis_sends_events_to_the_database(self):
        sink = RedisSink(url=closed_port_url(), stream="unused", fallback=DirectSink())
        events = [an_event() for _ in range(3)]
        for event in events:
            sink.write(event, EVENTS)
        assert sink.fallback_count == 3
        assert stored_events().keys() == {event["event_id"] for event in events}

    def test_unanswered_event_xadds_of_a_dropped_connection_go_to_database(
        self, redis_stream, redis_url
    ):
        sink = RedisSink(
            url=redis_url,
            stream=redis_stream,
            fallback=DirectSink(),
            read_replies_after_seconds=NO_TIMER,
        )
        sink.write(an_event(), EVENTS)
        sink.flush()
        admin = redis_client(redis_url)
        sink_address = "{}:{}".format(*sink.connection._sock.getsockname())
        held = [an_event() for _ in range(3)]
        admin.client_pause(5000, all=False)
        try:
            for event in held:
                sink.write(event, EVENTS)
            admin.client_kill(sink_address)
        finally:
            admin.client_unpause()
        sink.flush()
        assert admin.xlen(redis_stream) == 1
        assert stored_events().keys() == {event["event_id"] for event in held}
        assert drain_buffered_visits() == 1
        assert Event.objects.count() == 4

    def test_worker_killed_with_corked_event_xadds_loses_none(self, redis_stream, redis_url):
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        pid = os.fork()
        if pid == 0:
            try:
                for number in range(5):
                    sink.write(an_event(path=f"/killed/{number}/"), EVENTS)
            finally:
                os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(pid, 0)
        assert wait_for_stream_length(redis_url, redis_stream, 5) == 5
        assert drain_buffered_visits() == 5
        assert Event.objects.filter(path__startswith="/killed/").count() == 5

    def test_drain_duplicate_event_stored_once(self, redis_stream, redis_url):
        event = an_event()
        sink = RedisSink(url=redis_url, stream=redis_stream, fallback=DirectSink())
        sink.write(event, EVENTS)
        sink.write(event, EVENTS)
        DirectSink().write(event, EVENTS)  # and once through the fallback
        assert drain_buffered_visits() == 2
        assert drain_buffered_visits() == 0
        assert Event.objects.count() == 1

    def test_drain_malformed_event_entry_dropped(self, redis_stream, redis_url):
        client = redis_client(redis_url)
        client.xadd(redis_stream, {"event": "{not json"})
        client.xadd(redis_stream, {"event": event_to_json(an_event(props=[1]))})
        client.xadd(redis_stream, {"event": event_to_json(an_event())})
        assert drain_buffered_visits() == 1
        assert client.xlen(redis_stream) == 0
        assert Event.objects.count() == 1
