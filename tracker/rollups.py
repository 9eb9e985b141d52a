# ruff: noqa: S608 - the SQL is assembled from table names and constants; values are parameters.
"""Set-based aggregation of raw page views into visits and rollups, incremental and exact.

A run takes the raw visits whose id is above the watermark (``AggregationState``) in batches of
at most ``batch_size`` consecutive ids. Each batch is one transaction that updates every rollup
and advances the watermark, so a run killed half-way leaves nothing half-written and the next
run redoes the batch.

Per batch, all in SQL (no Python loop over rows, memory flat):

1. ``BATCH`` (a temporary table) gets the batch's per-visitor summary, from one sort by
   (visitor, time, id): the first page view gives the entry and the first-touch fields, the last
   the exit. ``BEFORE`` gets the stored ``TrackedSession`` rows of those visitors, as they were.
2. ``PageHourly`` is upserted from the raw rows: pageviews are added; a visitor counts towards
   ``sessions`` of an (hour, path) only when it had no earlier aggregated page view there
   (probed in the raw rows only for visitors whose stored span covers that hour), so distinct
   visitors stay exact across runs. ``PageVisitorHourly`` gets the change to each (visitor,
   path)'s chain of hours from its earliest new hour on, so that distinct visitors of a path
   over any range are exact too.
3. ``TrackedSession``: visitors not stored yet are inserted (in start order, which keeps its
   indexes' writes local); stored ones are merged with their summary (earliest page view wins
   the entry and the first-touch fields, the latest the exit; ties go to the lower id for entry
   and the higher id for exit, and earlier batches hold lower ids).
4. Visits: per visitor of the batch, the visits from the one its earliest new page view would
   join onward are kept in ``OLD``, deleted, and split again from the raw rows (a late page
   view can join two visits or split one); ``TrackedSession.visits`` is recounted.
5. ``VisitHourly``, ``VisitorHourly`` and ``CountryVisitorHourly`` get the exact change: the
   re-split visits are added and ``OLD`` is subtracted, per (start hour, dimension, value), per
   (start hour, lag, earlier visit's hour) and per (start hour, country, previous visit from
   that country's hour). Rows left with nothing are deleted. The cost follows the batch, not
   the size of the hours it touches.
6. The daily rollups, which let a month-long dashboard range read 30 rows per key instead of
   720: ``VisitDaily``, ``VisitorDaily``, ``PageVisitorDaily`` and ``CountryVisitorDaily`` get
   the same changes summed per UTC day; ``PageDaily`` is recomputed from ``PageHourly`` for the
   days of the batch's page views (usually today alone). A day's row is thus always the sum of
   its hours.

Concurrency: the watermark row is locked for each batch (``select_for_update`` on PostgreSQL; on
SQLite every write transaction is ``BEGIN IMMEDIATE`` and so runs alone), and only aggregation
inserts into ``TrackedSession``. On PostgreSQL ids come from a sequence and a slow transaction
can commit a lower id after a higher one is visible; a run's upper bound is therefore only used
once the inserts in flight when it was read have ended (see ``_safe_upper_bound``), so no id
below the watermark can appear afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, models, transaction

from tracker import goal_rollups, goals
from tracker.models import (
    COUNTRY_MAX_LENGTH,
    DEVICE_FIELDS,
    PATH_MAX_LENGTH,
    SOURCE_FIELDS,
    VISIT_MEASURES,
    VISITOR_LAGS,
    AggregationState,
    CountryVisitorDaily,
    CountryVisitorHourly,
    PageDaily,
    PageHourly,
    PagePath,
    PageVisitorDaily,
    PageVisitorHourly,
    TrackedSession,
    Visit,
    VisitDaily,
    VisitHourly,
    VisitorDaily,
    VisitorHourly,
    VisitSummary,
)

logger = logging.getLogger(__name__)

STATE_NAME = "visits"
DEFAULT_BATCH_SIZE = 1_000_000
WRITER_WAIT_SECONDS = 30  # how long a run waits for in-flight inserts below its bound
SMALL_BATCH = 50_000  # ids per batch below which PostgreSQL probes indexes rather than hashes

VISIT = Visit._meta.db_table
SESSION = TrackedSession._meta.db_table
PAGE_HOURLY = PageHourly._meta.db_table
VISITS = VisitSummary._meta.db_table
PATHS = PagePath._meta.db_table
VISIT_HOURLY = VisitHourly._meta.db_table
PAGE_DAILY = PageDaily._meta.db_table
VISIT_DAILY = VisitDaily._meta.db_table
VISITOR_HOURLY = VisitorHourly._meta.db_table
VISITOR_DAILY = VisitorDaily._meta.db_table
PAGE_VISITOR_HOURLY = PageVisitorHourly._meta.db_table
PAGE_VISITOR_DAILY = PageVisitorDaily._meta.db_table
COUNTRY_VISITOR_HOURLY = CountryVisitorHourly._meta.db_table
COUNTRY_VISITOR_DAILY = CountryVisitorDaily._meta.db_table
# Per-connection temporary tables, emptied at the start of each batch.
BATCH = "tracker_rollup_batch"  # the batch's per-session summaries
BEFORE = "tracker_rollup_before"  # the stored rows of the batch's sessions, before the batch
RESTART = "tracker_rollup_restart"  # per visitor of the batch: the visit re-sessionizing starts at
OLD = "tracker_rollup_old"  # the stored visits that re-sessionizing replaces, as they were
DELTA = "tracker_rollup_delta"  # the change to VisitHourly
DAY_DELTA = "tracker_rollup_day_delta"  # the same change, per day: VisitDaily's
LAG_CHANGES = "tracker_rollup_lag_changes"  # VisitorHourly's rows, old ones negated
LAG_DELTA = "tracker_rollup_lag_delta"  # the change to VisitorHourly
LAG_DAY_DELTA = "tracker_rollup_lag_day_delta"  # the same change, per day: VisitorDaily's
PAGE_PAIRS = "tracker_rollup_page_pairs"  # (visitor, path) with a new hour, from the earliest
PAGE_LAG_CHANGES = "tracker_rollup_page_lag_changes"  # PageVisitorHourly's rows, old ones negated
PAGE_LAG_DELTA = "tracker_rollup_page_lag_delta"  # the change to PageVisitorHourly
PAGE_LAG_DAY_DELTA = "tracker_rollup_page_lag_day_delta"  # the same per day: PageVisitorDaily's
COUNTRY_CHANGES = "tracker_rollup_country_changes"  # CountryVisitorHourly's rows, old ones negated
COUNTRY_DELTA = "tracker_rollup_country_delta"  # the change to CountryVisitorHourly
COUNTRY_DAY_DELTA = "tracker_rollup_country_day_delta"  # the same per day: CountryVisitorDaily's


@dataclass(frozen=True)
class _EarlierHourRollup:
    """A rollup counting rows by the hour of an earlier one (VisitorHourly: visits by their
    visitor's k-th earlier visit; PageVisitorHourly: a path's visitors by their earlier view;
    CountryVisitorHourly: visits by their visitor's previous visit from the same country), with
    its daily table and the temporary tables its change goes through."""

    hourly: str
    daily: str
    changes: str  # its rows, old ones negated
    delta: str
    day_delta: str
    key: str  # the column between the hour and previous_hour
    measure: str


EARLIER_HOUR_ROLLUPS = (
    _EarlierHourRollup(
        VISITOR_HOURLY, VISITOR_DAILY, LAG_CHANGES, LAG_DELTA, LAG_DAY_DELTA, "lag", "visits"
    ),
    _EarlierHourRollup(
        PAGE_VISITOR_HOURLY,
        PAGE_VISITOR_DAILY,
        PAGE_LAG_CHANGES,
        PAGE_LAG_DELTA,
        PAGE_LAG_DAY_DELTA,
        "path",
        "visitors",
    ),
    _EarlierHourRollup(
        COUNTRY_VISITOR_HOURLY,
        COUNTRY_VISITOR_DAILY,
        COUNTRY_CHANGES,
        COUNTRY_DELTA,
        COUNTRY_DAY_DELTA,
        "country",
        "visitors",
    ),
)

# Fields a visitor and a visit take from their first page view.
FIRST_TOUCH = [*SOURCE_FIELDS, *DEVICE_FIELDS, "country"]
# What a batch's summary holds per session, and what a stored session holds besides.
SUMMARY = ["first_seen", "last_seen", "pageviews", "entry_path", "exit_path", *FIRST_TOUCH]
STORED = [*SUMMARY, "duration_seconds"]
# What a stored visit holds that its rollups count.
VISIT_COUNTED = [
    "number",
    "started_at",
    "pageviews",
    "duration_seconds",
    "entry_path",
    "exit_path",
    *FIRST_TOUCH,
]


class _Dialect:
    """The few expressions that differ between PostgreSQL and SQLite."""

    def __init__(self, vendor: str) -> None:
        self.postgres = vendor == "postgresql"

    def hour(self, value: str) -> str:
        if self.postgres:
            # Each batch sets TimeZone to UTC: the time-zone argument of date_trunc would look
            # the zone up on every row, which costs more than the rest of a scan.
            return f"date_trunc('hour', {value})"
        # Django stores SQLite datetimes as UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'.
        return f"strftime('%%Y-%%m-%%d %%H:00:00', {value})"

    def day(self, value: str) -> str:
        if self.postgres:
            return f"date_trunc('day', {value})"  # in UTC, like hour()
        return f"strftime('%%Y-%%m-%%d 00:00:00', {value})"

    def next_day(self, value: str) -> str:
        if self.postgres:
            return f"({self.day(value)} + interval '1 day')"
        return f"strftime('%%Y-%%m-%%d 00:00:00', {value}, '+1 day')"

    def next_hour(self, hour: str) -> str:
        if self.postgres:
            return f"({hour} + interval '1 hour')"
        return f"strftime('%%Y-%%m-%%d %%H:00:00', {hour}, '+1 hour')"

    def least(self, a: str, b: str) -> str:
        return f"least({a}, {b})" if self.postgres else f"min({a}, {b})"

    def greatest(self, a: str, b: str) -> str:
        return f"greatest({a}, {b})" if self.postgres else f"max({a}, {b})"

    def whole_seconds(self, last: str, first: str) -> str:
        """Whole seconds from first to last, truncated like ``timedelta // 1 second``."""
        if self.postgres:
            return f"floor(extract(epoch from ({last}) - ({first})))::integer"
        return f"(({self._micros(last)} - {self._micros(first)}) / 1000000)"

    @staticmethod
    def _micros(value: str) -> str:
        # Exact integer microseconds: strftime() and julianday() round to milliseconds, so the
        # whole seconds and the fraction are read separately from the text.
        return (
            f"(CAST(strftime('%%s', substr({value}, 1, 19)) AS INTEGER) * 1000000"
            f" + CAST(substr({value} || '.000000', 21, 6) AS INTEGER))"
        )

    def page_sequence(self) -> tuple[str, str]:
        """(a column on each page view, its aggregate per visit): the visit's page ids in order.

        SQLite before 3.44 has no ORDER BY inside an aggregate, but its window aggregates
        follow the window's order, so every row of a visit carries the whole list.
        """
        if self.postgres:
            return "page", "array_agg(pages ORDER BY visited_at, id)"
        window = (
            "PARTITION BY tracking_id, number ORDER BY visited_at, id"
            " ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
        )
        return f"json_group_array(page) OVER ({window})", "max(pages)"

    def longer_than(self, later: str, earlier: str) -> str:
        """SQL true when ``later`` is more than %s whole seconds after ``earlier``, exactly."""
        if self.postgres:
            return f"{later} - {earlier} > make_interval(secs => %s)"
        return f"{self._micros(later)} - {self._micros(earlier)} > %s * 1000000"

    def temporary_tables(self) -> list[str]:
        uuid, moment, text, number = (
            ("uuid", "timestamp with time zone", "text", "bigint")
            if self.postgres
            else ("", "", "", "")
        )
        dimension, value = (
            ("varchar(20)", f"varchar({PATH_MAX_LENGTH})") if self.postgres else ("", "")
        )
        types = {"first_seen": moment, "last_seen": moment, "started_at": moment}
        types |= {"pageviews": number, "duration_seconds": number, "number": number}
        summary, stored, counted = (
            ", ".join(f"{f} {types.get(f, text)}" for f in fields)
            for fields in (SUMMARY, STORED, VISIT_COUNTED)
        )
        measures = ", ".join(f"{m} {number}" for m in VISIT_MEASURES)
        country = f"varchar({COUNTRY_MAX_LENGTH})" if self.postgres else ""
        key_types = {"lag": number, "path": value, "country": country}
        return [
            # No key: filling it is on the critical path, and it is only ever read in full.
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {BATCH}
                (tracking_id {uuid}, {summary})""",
            # Keyed, so small batches probe it instead of scanning it per row.
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {BEFORE}
                (tracking_id {uuid} PRIMARY KEY, {stored})""",
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {RESTART} (tracking_id {uuid} PRIMARY KEY,
                number {number}, start_at {moment}, start_id {number})""",
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {OLD} (tracking_id {uuid}, {counted})",
            # Key columns typed like VisitHourly's, so joins on them use its unique index.
            *(
                f"""CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({when} {moment},
                    dimension {dimension}, value {value}, {measures})"""
                for table, when in ((DELTA, "hour"), (DAY_DELTA, "day"))
            ),
            f"""CREATE TEMPORARY TABLE IF NOT EXISTS {PAGE_PAIRS} (tracking_id {uuid},
                path {value}, since {moment})""",
            *(
                f"""CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({when} {moment},
                    {rollup.key} {key_types[rollup.key]}, previous_hour {moment},
                    {rollup.measure} {number})"""
                for rollup in EARLIER_HOUR_ROLLUPS
                for table, when in (
                    (rollup.changes, "hour"),
                    (rollup.delta, "hour"),
                    (rollup.day_delta, "day"),
                )
            ),
        ]

    def empty(self, table: str) -> str:
        # TRUNCATE leaves no dead rows behind in a temporary table reused batch after batch.
        return f"TRUNCATE {table}" if self.postgres else f"DELETE FROM {table}"


def _pages_bucket(pageviews: str) -> str:
    return (
        f"CASE WHEN {pageviews} <= 3 THEN CAST({pageviews} AS varchar(10))"
        f" WHEN {pageviews} <= 5 THEN '4-5' WHEN {pageviews} <= 10 THEN '6-10'"
        f" WHEN {pageviews} <= 20 THEN '11-20' ELSE '21+' END"
    )


def _batch_sql(d: _Dialect) -> str:
    """Summarise the batch (ids in (lo, hi]) per session into BATCH; params: lo, hi."""
    # One sort by (session, time, id): the first row of each session is its entry and carries
    # the first-touch fields; whole-partition window aggregates give the rest.
    session = "PARTITION BY tracking_id ORDER BY visited_at, id"
    whole = "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
    summary = f"""visited_at AS first_seen, last_value(visited_at) OVER session AS last_seen,
        count(*) OVER session AS pageviews, path AS entry_path,
        last_value(path) OVER session AS exit_path, {", ".join(FIRST_TOUCH)}"""
    insert = f"""INSERT INTO {BATCH} (tracking_id, {", ".join(SUMMARY)})"""
    if d.postgres:
        # DISTINCT ON keeps each session's first row without a second window pass over the
        # batch (a third faster on a million visits).
        return f"""{insert}
            SELECT DISTINCT ON (tracking_id) tracking_id, {summary}
            FROM {VISIT} WHERE id > %s AND id <= %s
            WINDOW session AS ({session} {whole})
            ORDER BY tracking_id, visited_at, id
        """
    return f"""{insert}
        SELECT tracking_id, {", ".join(SUMMARY)} FROM (
            SELECT tracking_id, row_number() OVER visits AS position, {summary}
            FROM {VISIT} WHERE id > %s AND id <= %s
            WINDOW visits AS ({session}), session AS (visits {whole})
        ) ordered
        WHERE position = 1
    """


def _before_sql() -> str:
    """Keep the stored rows of the batch's sessions as they are before the batch."""
    return f"""
        INSERT INTO {BEFORE} (tracking_id, {", ".join(STORED)})
        SELECT t.tracking_id, {", ".join(f"t.{f}" for f in STORED)}
        FROM {BATCH} b JOIN {SESSION} t ON t.tracking_id = b.tracking_id
    """


def _page_hourly_sql(d: _Dialect) -> str:
    """Add one batch (ids in (lo, hi]) to PageHourly; params: lo, hi, lo."""
    earlier_visit_there = (
        f"EXISTS (SELECT 1 FROM {VISIT} o WHERE o.tracking_id = b.tracking_id"
        f" AND o.visited_at >= b.hour AND o.visited_at < {d.next_hour('b.hour')}"
        " AND o.path = b.path AND o.id <= %s)"
    )
    return f"""
        WITH b AS (
            SELECT {d.hour("visited_at")} AS hour, path, tracking_id, count(*) AS pageviews
            FROM {VISIT} WHERE id > %s AND id <= %s
            GROUP BY 1, 2, 3
        )
        INSERT INTO {PAGE_HOURLY} (hour, path, pageviews, sessions)
        SELECT b.hour, b.path, sum(b.pageviews), sum(
            CASE WHEN s.tracking_id IS NULL OR s.last_seen < b.hour
                      OR s.first_seen >= {d.next_hour("b.hour")} THEN 1
                 WHEN {earlier_visit_there} THEN 0 ELSE 1 END)
        FROM b LEFT JOIN {BEFORE} s ON s.tracking_id = b.tracking_id
        WHERE true
        GROUP BY b.hour, b.path
        ON CONFLICT (hour, path) DO UPDATE SET
            pageviews = {PAGE_HOURLY}.pageviews + excluded.pageviews,
            sessions = {PAGE_HOURLY}.sessions + excluded.sessions
    """


def _page_pairs_sql(d: _Dialect) -> str:
    """Find the (visitor, path) pairs that the batch gives a new hour, with the earliest such
    hour; params: lo, hi, lo.

    An hour is new when no visit aggregated before had the pair in it, probed in the raw rows
    only for visitors whose stored span covers that hour (as for PageHourly).
    """
    earlier_there = (
        f"EXISTS (SELECT 1 FROM {VISIT} o WHERE o.tracking_id = b.tracking_id"
        f" AND o.visited_at >= b.hour AND o.visited_at < {d.next_hour('b.hour')}"
        " AND o.path = b.path AND o.id <= %s)"
    )
    return f"""
        WITH b AS (
            SELECT DISTINCT tracking_id, path, {d.hour("visited_at")} AS hour
            FROM {VISIT} WHERE id > %s AND id <= %s
        )
        INSERT INTO {PAGE_PAIRS} (tracking_id, path, since)
        SELECT b.tracking_id, b.path, min(b.hour)
        FROM b LEFT JOIN {BEFORE} s ON s.tracking_id = b.tracking_id
        WHERE s.tracking_id IS NULL OR s.last_seen < b.hour
            OR s.first_seen >= {d.next_hour("b.hour")} OR NOT {earlier_there}
        GROUP BY b.tracking_id, b.path
    """


def _page_lag_changes_sql(d: _Dialect, *, sign: int) -> str:
    """PageVisitorHourly's rows of the pairs' hours from their earliest new one, as the raw
    rows up to an id give them, counted ``sign`` times each; params: that id.

    Hours of a pair before its earliest new hour keep their previous hour, so only the later
    ones are taken, with their previous hour looked up over all the pair's hours.
    """
    return f"""
        INSERT INTO {PAGE_LAG_CHANGES} (hour, path, previous_hour, visitors)
        SELECT hour, path, previous_hour, {sign} * count(*) FROM (
            SELECT g.hour, g.path, g.since,
                lag(g.hour) OVER (PARTITION BY g.tracking_id, g.path ORDER BY g.hour)
                    AS previous_hour
            FROM (
                SELECT DISTINCT p.tracking_id, p.path, p.since, {d.hour("v.visited_at")} AS hour
                FROM {PAGE_PAIRS} p JOIN {VISIT} v
                    ON v.tracking_id = p.tracking_id AND v.path = p.path
                WHERE v.id <= %s
            ) g
        ) chain
        WHERE previous_hour IS NOT NULL AND hour >= since
        GROUP BY hour, path, previous_hour
    """


NEW_SESSION = f"NOT EXISTS (SELECT 1 FROM {BEFORE} p WHERE p.tracking_id = b.tracking_id)"


# A visitor's visits, once they are split again: the number of its last (one index probe).
VISIT_COUNT = f"(SELECT max(w.number) FROM {VISITS} w WHERE w.tracking_id = b.tracking_id)"


def _insert_sessions_sql(d: _Dialect) -> str:
    """Insert the batch's sessions that are not stored yet."""
    # A plain INSERT (no ON CONFLICT): only aggregation inserts here, under the watermark lock.
    return f"""
        INSERT INTO {SESSION} (tracking_id, {", ".join(STORED)}, ended, visits)
        SELECT b.tracking_id, {", ".join(f"b.{f}" for f in SUMMARY)},
            {d.whole_seconds("b.last_seen", "b.first_seen")}, false, {VISIT_COUNT}
        FROM {BATCH} b
        WHERE {NEW_SESSION}
        ORDER BY b.first_seen
    """


def _merge_sessions_sql(d: _Dialect) -> str:
    """Merge the batch's summaries into the sessions stored before it."""
    old = SESSION
    new_first = d.least(f"{old}.first_seen", "b.first_seen")
    new_last = d.greatest(f"{old}.last_seen", "b.last_seen")
    # Stored visits all have lower ids than the batch's: a tie on time keeps the stored entry and
    # takes the batch's exit.
    earlier = f"b.first_seen < {old}.first_seen"
    later = f"b.last_seen >= {old}.last_seen"
    take_first = ",\n".join(
        f"{f} = CASE WHEN {earlier} THEN b.{f} ELSE {old}.{f} END"
        for f in ["entry_path", *FIRST_TOUCH]
    )
    return f"""
        UPDATE {SESSION} SET
            first_seen = {new_first},
            last_seen = {new_last},
            pageviews = {old}.pageviews + b.pageviews,
            visits = {VISIT_COUNT},
            duration_seconds = {d.whole_seconds(new_last, new_first)},
            exit_path = CASE WHEN {later} THEN b.exit_path ELSE {old}.exit_path END,
            ended = CASE WHEN b.last_seen > {old}.last_seen THEN false ELSE {old}.ended END,
            {take_first}
        FROM {BATCH} b JOIN {BEFORE} p ON p.tracking_id = b.tracking_id
        WHERE {old}.tracking_id = b.tracking_id
    """


def _restart_sql(d: _Dialect) -> str:
    """Find, per visitor of the batch, the visit that splitting again starts from; params:
    timeout.

    A page view at t can only change the visits from the one it would join onward: the latest
    visit started at or before the batch's earliest page view of that visitor (its own page
    views sort before the batch's at equal times, having lower ids). When that visit ended more
    than the timeout before t, t starts a visit of its own, so the stored one is kept as it is
    (its raw rows may be pruned by now) and splitting starts at t with the next number. Without
    such a visit, the visitor's visits are all redone from the first (number 1).
    """
    latest = f"""SELECT max(w.number) FROM {VISITS} w
        WHERE w.tracking_id = b.tracking_id AND w.started_at <= b.first_seen"""
    apart = d.longer_than("b.first_seen", "v.ended_at")
    return f"""
        INSERT INTO {RESTART} (tracking_id, number, start_at, start_id)
        SELECT tracking_id, CASE WHEN number IS NULL THEN 1 WHEN apart = 1 THEN number + 1
                ELSE number END,
            CASE WHEN apart = 1 THEN first_seen ELSE started_at END,
            CASE WHEN apart = 1 THEN 0 ELSE first_pageview_id END
        FROM (
            SELECT b.tracking_id, b.first_seen, v.number, v.started_at, v.first_pageview_id,
                CASE WHEN {apart} THEN 1 ELSE 0 END AS apart
            FROM {BATCH} b LEFT JOIN {VISITS} v
                ON v.tracking_id = b.tracking_id AND v.number = ({latest})
        ) latest
    """


def _old_visits_sql() -> list[str]:
    """Keep the visits about to be replaced, then delete them."""
    return [
        f"""INSERT INTO {OLD} (tracking_id, {", ".join(VISIT_COUNTED)})
            SELECT v.tracking_id, {", ".join(f"v.{f}" for f in VISIT_COUNTED)}
            FROM {RESTART} r JOIN {VISITS} v
                ON v.tracking_id = r.tracking_id AND v.number >= r.number""",
        # Driven from the batch's visitors: an EXISTS here may be planned as a scan of every
        # stored visit.
        f"""DELETE FROM {VISITS} WHERE id IN (SELECT v.id FROM {RESTART} r JOIN {VISITS} v
            ON v.tracking_id = r.tracking_id AND v.number >= r.number)""",
    ]


# The page views that the batch's visitors' visits are split again from (aliased v), as the
# join from RESTART and the condition on it; param: hi.
RESTART_PAGE_VIEWS = f"{RESTART} r JOIN {VISIT} v ON v.tracking_id = r.tracking_id"
RESTARTED = """v.id <= %s AND (r.start_id IS NULL OR v.visited_at > r.start_at
    OR (v.visited_at = r.start_at AND v.id >= r.start_id))"""


def _paths_number_sql() -> str:
    """Give every path the batch's visits will list a PagePath id; param: hi.

    The paths of the visits split again, not only of the new page views: page views aggregated
    before PagePath existed may be among them. Looking first keeps PostgreSQL from spending a
    sequence number on each path that is already there.
    """
    return f"""
        INSERT INTO {PATHS} (path)
        SELECT DISTINCT v.path FROM {RESTART_PAGE_VIEWS}
        WHERE {RESTARTED} AND NOT EXISTS (SELECT 1 FROM {PATHS} p WHERE p.path = v.path)
        ON CONFLICT (path) DO NOTHING
    """


def _sessionize_sql(d: _Dialect) -> str:
    """Split the batch's visitors' page views from their restart point into visits and store
    them; params: hi, timeout.

    A page view starts a visit when it is its visitor's first, comes more than the timeout
    after the previous one, or announces a source (referrer or UTM fields) other than its
    visit's. Within a run of page views without such a gap, a visit's source is the last one
    announced before, so comparing each announcing page view with the previous announcement
    (the head of the rows counted after it) decides it with window functions alone, no
    recursion. The windows carry only ids, times, the encoded source and the page's PagePath id
    (each visit's list of pages); the entry and exit paths and the fields are read back by id
    for the visits' first and last page views.
    """
    order = "ORDER BY visited_at, id"
    running = f"PARTITION BY tracking_id {order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    # Each field's length before it, so that different sources never encode alike.
    source = " || ".join(f"length(v.{f}) || ':' || v.{f}" for f in SOURCE_FIELDS)
    announces = " OR ".join(f"v.{f} <> ''" for f in SOURCE_FIELDS)
    gap = d.longer_than("visited_at", "lag(visited_at) OVER visitor")
    sequence_column, sequence_aggregate = d.page_sequence()
    return f"""
        WITH page_views AS (
            SELECT v.id, v.tracking_id, v.visited_at, r.number AS base, p.id AS page,
                CASE WHEN {announces} THEN {source} END AS source
            FROM {RESTART_PAGE_VIEWS} JOIN {PATHS} p ON p.path = v.path
            WHERE {RESTARTED}
        ), gaps AS (
            SELECT page_views.*,
                CASE WHEN lag(visited_at) OVER visitor IS NULL OR {gap} THEN 1 ELSE 0 END AS gap
            FROM page_views
            WINDOW visitor AS (PARTITION BY tracking_id {order})
        ), counted AS (
            SELECT gaps.*, sum(gap) OVER running AS run, count(source) OVER running AS announced
            FROM gaps
            WINDOW running AS ({running})
        ), headed AS (
            SELECT counted.*, first_value(source) OVER announcement AS head_source,
                first_value(run) OVER announcement AS head_run
            FROM counted
            WINDOW announcement AS (PARTITION BY tracking_id, announced {order})
        ), starts AS (
            SELECT id, tracking_id, visited_at, base, page, CASE WHEN gap = 1 THEN 1
                WHEN source IS NULL THEN 0
                WHEN lag(announced) OVER visitor = 0 OR lag(head_run) OVER visitor <> run
                    OR lag(head_source) OVER visitor <> source THEN 1
                ELSE 0 END AS starts
            FROM headed
            WINDOW visitor AS (PARTITION BY tracking_id {order})
        ), numbered AS (
            SELECT id, tracking_id, visited_at, starts, page,
                base - 1 + sum(starts) OVER running AS number,
                coalesce(lead(starts) OVER visitor, 1) AS last
            FROM starts
            WINDOW visitor AS (PARTITION BY tracking_id {order}), running AS ({running})
        ), sequenced AS (
            SELECT numbered.*, {sequence_column} AS pages FROM numbered
        ), visits AS (
            SELECT tracking_id, number, count(*) AS pageviews, {sequence_aggregate} AS pages,
                min(visited_at) AS started_at, max(visited_at) AS ended_at,
                max(CASE WHEN starts = 1 THEN id END) AS first_id,
                max(CASE WHEN last = 1 THEN id END) AS last_id
            FROM sequenced
            GROUP BY tracking_id, number
        )
        INSERT INTO {VISITS} (tracking_id, number, first_pageview_id, started_at, ended_at,
            pageviews, duration_seconds, entry_path, exit_path, pages, {", ".join(FIRST_TOUCH)})
        SELECT b.tracking_id, b.number, b.first_id, b.started_at, b.ended_at, b.pageviews,
            {d.whole_seconds("b.ended_at", "b.started_at")}, f.path, l.path, b.pages,
            {", ".join(f"f.{f}" for f in FIRST_TOUCH)}
        FROM visits b JOIN {VISIT} f ON f.id = b.first_id JOIN {VISIT} l ON l.id = b.last_id
        ORDER BY b.started_at
    """


# The batch's visitors' visits as split again (aliased v).
NEW_VISITS = (
    f"{RESTART} r JOIN {VISITS} v ON v.tracking_id = r.tracking_id AND v.number >= r.number"
)


def _lag_changes_sql(d: _Dialect, *, visits: str, sign: int) -> str:
    """VisitorHourly's rows of ``visits`` (aliased v), counted ``sign`` times each."""
    lags = ", ".join(f"({lag})" for lag in VISITOR_LAGS)
    return f"""
        WITH lags (lag) AS (VALUES {lags})
        INSERT INTO {LAG_CHANGES} (hour, lag, previous_hour, visits)
        SELECT {d.hour("v.started_at")}, lags.lag, {d.hour("p.started_at")}, {sign} * count(*)
        FROM {visits} CROSS JOIN lags
            JOIN {VISITS} p ON p.tracking_id = v.tracking_id AND p.number = v.number - lags.lag
        WHERE true
        GROUP BY 1, 2, 3
    """


def _country_changes_sql(d: _Dialect, *, sign: int) -> str:
    """CountryVisitorHourly's rows of the visits from the restart points, counted ``sign``
    times each: run with -1 before they are replaced and with 1 after.

    The previous visit from the same country may lie before the restart point, so the window
    runs over all of the batch's visitors' visits.
    """
    same_country = "PARTITION BY v.tracking_id, v.country ORDER BY v.number"
    return f"""
        INSERT INTO {COUNTRY_CHANGES} (hour, country, previous_hour, visitors)
        SELECT {d.hour("started_at")}, country, {d.hour("previous_start")}, {sign} * count(*)
        FROM (
            SELECT v.started_at, v.country, v.number, r.number AS restart,
                lag(v.started_at) OVER ({same_country}) AS previous_start
            FROM {RESTART} r JOIN {VISITS} v ON v.tracking_id = r.tracking_id
        ) c
        WHERE number >= restart AND previous_start IS NOT NULL
        GROUP BY 1, 2, 3
    """


def _delta_sql(d: _Dialect) -> str:
    """Compute VisitHourly's change: the re-sessionized visits minus those they replace."""
    dimensions = VisitHourly.Dimension
    columns = {dimension: dimension.value for dimension in dimensions if dimension.value != "all"}
    columns[dimensions.PAGES] = "bucket"
    measured = ["pageviews", "duration_seconds", "entry_path", "exit_path", *FIRST_TOUCH]
    returning = "CASE WHEN {0}.number > 1 THEN 1 ELSE 0 END AS returning_visits"
    changes = f"""
        SELECT c.*, {_pages_bucket("c.pageviews")} AS bucket FROM (
            SELECT 1 AS sign, {d.hour("v.started_at")} AS hour,
                {", ".join(f"v.{f} AS {f}" for f in measured)}, {returning.format("v")}
            FROM {NEW_VISITS}
            UNION ALL
            SELECT -1, {d.hour("o.started_at")}, {", ".join(f"o.{f}" for f in measured)},
                {returning.format("o")}
            FROM {OLD} o
        ) c
    """
    measures = """sum(s.sign), sum(s.sign * s.pageviews),
        sum(CASE WHEN s.pageviews = 1 THEN s.sign ELSE 0 END), sum(s.sign * s.duration_seconds),
        sum(s.sign * s.returning_visits)"""
    insert = f"INSERT INTO {DELTA} (hour, dimension, value, {', '.join(VISIT_MEASURES)})"
    changed = """HAVING sum(s.sign) <> 0 OR sum(s.sign * s.pageviews) <> 0
        OR sum(CASE WHEN s.pageviews = 1 THEN s.sign ELSE 0 END) <> 0
        OR sum(s.sign * s.duration_seconds) <> 0 OR sum(s.sign * s.returning_visits) <> 0"""
    if d.postgres:
        # One pass with a grouping set per dimension; GROUPING() tells which set a row is from
        # (every grouped column is NOT NULL, so COALESCE picks the one that was grouped).
        dimension = " ".join(
            f"WHEN grouping(s.{column}) = 0 THEN '{dim.value}'" for dim, column in columns.items()
        )
        sets = ", ".join(f"(s.hour, s.{column})" for column in columns.values())
        value = ", ".join(f"s.{column}" for column in columns.values())
        return f"""
            WITH s AS ({changes})
            {insert}
            SELECT s.hour, CASE {dimension} ELSE '{dimensions.ALL.value}' END,
                coalesce({value}, ''), {measures}
            FROM s
            GROUP BY GROUPING SETS ((s.hour), {sets})
            {changed}
        """
    # SQLite has no grouping sets: one row per visit and dimension, grouped once.
    cases = " ".join(f"WHEN '{dim.value}' THEN s.{column}" for dim, column in columns.items())
    rows = ", ".join(f"('{dim.value}')" for dim in dimensions)
    return f"""
        WITH dims (dimension) AS (VALUES {rows}), s AS ({changes})
        {insert}
        SELECT s.hour, dims.dimension, CASE dims.dimension {cases} ELSE '' END, {measures}
        FROM s CROSS JOIN dims
        WHERE true
        GROUP BY 1, 2, 3
        {changed}
    """


def _apply_delta_sql(
    *, table: str, delta: str, keys: list[str], measures: list[str], count: str
) -> list[str]:
    """Add the change to existing rows, insert new keys, and drop rows left with no visit.

    ``keys`` are the unique key of both ``table`` and ``delta``; ``count`` the measure that is
    zero exactly when a row counts nothing.
    """
    same_key = " AND ".join(f"{table}.{key} = d.{key}" for key in keys)
    key_list = ", ".join(keys)
    return [
        f"""UPDATE {table} SET
            {", ".join(f"{m} = {table}.{m} + d.{m}" for m in measures)}
            FROM {delta} d WHERE {same_key}""",
        # A key missing so far had nothing counted before the batch, so its change is all
        # additions; the keys the UPDATE found are skipped by the unique index. No join with the
        # table being written: planned while it was empty, that join rescanned it per row (88 s
        # for 84k keys).
        f"""INSERT INTO {table} ({key_list}, {", ".join(measures)})
            SELECT {", ".join(f"d.{k}" for k in keys)}, {", ".join(f"d.{m}" for m in measures)}
            FROM {delta} d
            WHERE {" AND ".join(f"d.{m} >= 0" for m in measures)}
            ON CONFLICT ({key_list}) DO NOTHING""",
        # Only keys that lost visits can be empty now: probe those, never scan the table.
        f"""DELETE FROM {table} WHERE {count} = 0 AND ({key_list}) IN
            (SELECT {key_list} FROM {delta} WHERE {count} < 0)""",
    ]


def rollup_changes_apply(
    cursor,
    d: _Dialect,
    *,
    changes: str | None,
    delta: str,
    day_delta: str,
    hourly: str,
    daily: str,
    keys: list[str],
    measures: list[str],
    count: str,
) -> None:
    """Net ``changes`` (rows per hour and ``keys``, old ones negated) into ``delta``, sum that
    per UTC day into ``day_delta``, and apply both to the ``hourly`` and ``daily`` rollups.

    ``changes`` is None when the caller has filled ``delta`` itself, netted. Keys whose change
    nets to nothing are left out, so their rows are neither written nor probed. ``keys`` leave
    out the hour and the day; ``count`` is as for ``_apply_delta_sql``.
    """
    key_list = ", ".join(keys)
    columns = f"{key_list}, {', '.join(measures)}"
    sums = ", ".join(f"sum({measure})" for measure in measures)
    nonzero = " OR ".join(f"sum({measure}) <> 0" for measure in measures)
    groups = ", ".join(str(position) for position in range(1, len(keys) + 2))
    if changes is not None:
        _execute(
            cursor,
            f"""INSERT INTO {delta} (hour, {columns})
                SELECT hour, {key_list}, {sums} FROM {changes}
                GROUP BY {groups} HAVING {nonzero}""",
        )
    _execute(
        cursor,
        f"""INSERT INTO {day_delta} (day, {columns})
            SELECT {d.day("hour")}, {key_list}, {sums} FROM {delta}
            GROUP BY {groups} HAVING {nonzero}""",
    )
    for table, table_delta, when in ((hourly, delta, "hour"), (daily, day_delta, "day")):
        for statement in _apply_delta_sql(
            table=table, delta=table_delta, keys=[when, *keys], measures=measures, count=count
        ):
            _execute(cursor, statement)


def _page_daily_sql(d: _Dialect) -> list[str]:
    """Recompute PageDaily for the days of the batch's visits from their hourly rows.

    The batch only adds to the hours of its own visits, which lie between its sessions' first
    and last visit in it: usually today alone.
    """
    first = f"(SELECT {d.day('min(first_seen)')} FROM {BATCH})"
    after = f"(SELECT {d.next_day('max(last_seen)')} FROM {BATCH})"
    return [
        f"DELETE FROM {PAGE_DAILY} WHERE day >= {first} AND day < {after}",
        f"""INSERT INTO {PAGE_DAILY} (day, path, pageviews, sessions)
            SELECT {d.day("hour")}, path, sum(pageviews), sum(sessions) FROM {PAGE_HOURLY}
            WHERE hour >= {first} AND hour < {after}
            GROUP BY 1, 2""",
    ]


def _execute(cursor, sql: str, params: list | tuple = ()) -> None:
    # Always pass params, so '%%' in the SQL means '%' on both backends.
    cursor.execute(sql, list(params))


@dataclass(frozen=True)
class RawSource:
    """An append-only raw table and what aggregation derives from it, under a watermark of its
    own (an ``AggregationState`` row): page views here, events in ``tracker.event_rollups``."""

    table: str
    state_name: str
    noun: str  # for the logs: "visits", "events"
    # Adds the rows with ids in (lo, hi] to every derived table; returns what it counted.
    aggregate_range: Callable[..., int]
    derived: tuple[type[models.Model], ...]


def _lock_state(name: str) -> AggregationState:
    """Return the watermark row, locked until the end of the current transaction."""
    AggregationState.objects.bulk_create([AggregationState(name=name)], ignore_conflicts=True)
    return AggregationState.objects.select_for_update().get(name=name)


def _safe_upper_bound(d: _Dialect, table: str) -> int | None:
    """Return an id up to which every row is committed, or None if a writer will not finish.

    On PostgreSQL ids come from a sequence: a transaction that drew a lower id may commit after
    a higher id is already visible. Any such transaction drew its id after taking ROW EXCLUSIVE
    on the table, so waiting for the transactions holding it when ``max(id)`` was read makes
    that maximum safe. Unlike ``LOCK TABLE ... SHARE`` this neither queues the tracker's inserts
    behind us nor cancels autovacuum.
    """
    with connection.cursor() as cursor:
        _execute(cursor, f"SELECT coalesce(max(id), 0) FROM {table}")
        bound = cursor.fetchone()[0]
        if not d.postgres:
            return bound  # SQLite writers are serialised: nothing is in flight.
        writers = f"""SELECT coalesce(array_agg(virtualtransaction), '{{}}') FROM pg_locks
            WHERE locktype = 'relation' AND relation = '{table}'::regclass
            AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()"""
        _execute(cursor, writers)
        waiting = cursor.fetchone()[0]
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        while waiting:
            if time.monotonic() > deadline:
                logger.warning("writers %s still open on %s: not aggregating now", waiting, table)
                return None
            time.sleep(0.02)
            _execute(cursor, f"{writers} AND virtualtransaction = ANY(%s)", [waiting])
            waiting = cursor.fetchone()[0]
    return bound


def _batch_end(cursor, *, table: str, lo: int, bound: int, batch_size: int) -> int | None:
    """Return the last id of the next batch after ``lo``, or None when none is left.

    A batch spans ``batch_size`` ids from the first one present: one index probe, where counting
    its rows would walk the whole batch in the index.
    """
    _execute(cursor, f"SELECT min(id) FROM {table} WHERE id > %s AND id <= %s", [lo, bound])
    first = cursor.fetchone()[0]
    return None if first is None else min(bound, first + batch_size - 1)


def raw_aggregate(source: RawSource, *, batch_size: int) -> int:
    """Aggregate every row of ``source`` above its watermark, one transaction per batch; return
    the count."""
    d = _Dialect(connection.vendor)
    bound = _safe_upper_bound(d, source.table)
    if bound is None:
        return 0
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            state = _lock_state(source.state_name)
            lo = state.last_visit_id
            hi = _batch_end(cursor, table=source.table, lo=lo, bound=bound, batch_size=batch_size)
            if hi is None:
                break
            count = source.aggregate_range(cursor, d, lo=lo, hi=hi)
            state.last_visit_id = hi
            state.save(update_fields=["last_visit_id", "updated_at"])
        total += count
        logger.info("aggregated %d %s (ids %d..%d)", count, source.noun, lo + 1, hi)
    return total


def raw_rebuild(source: RawSource, *, batch_size: int) -> int:
    """Recompute what ``source`` derives from its raw rows that remain; return the count.

    One transaction: readers see the old rollups until the new ones are complete. Rows already
    pruned are no longer counted, so rebuild only while the raw rows you care about are there.
    """
    d = _Dialect(connection.vendor)
    bound = _safe_upper_bound(d, source.table)
    if bound is None:
        raise RuntimeError(f"inserts into {source.table} did not finish: try the rebuild again")
    with transaction.atomic(), connection.cursor() as cursor:
        state = _lock_state(source.state_name)
        for model in source.derived:
            model.objects.all().delete()
        total = 0
        lo = 0
        while (
            hi := _batch_end(cursor, table=source.table, lo=lo, bound=bound, batch_size=batch_size)
        ) is not None:
            total += source.aggregate_range(cursor, d, lo=lo, hi=hi)
            lo = hi
        state.last_visit_id = lo
        state.save(update_fields=["last_visit_id", "updated_at"])
    logger.info("rebuilt the rollups of %d %s", total, source.noun)
    return total


def _aggregate_range(cursor, d: _Dialect, *, lo: int, hi: int) -> int:
    """Add the visits with ids in (lo, hi] to every rollup and return their count.

    The caller holds the lock.
    """
    bulk = hi - lo > SMALL_BATCH
    if d.postgres:
        # Big batches sort and hash in memory instead of on disk (a million visits sort in
        # ~150 MB); JIT compilation costs more than it saves on these short statements.
        _execute(cursor, "SET LOCAL work_mem = '256MB'")
        _execute(cursor, "SET LOCAL jit = off")
        _execute(cursor, "SET LOCAL TimeZone = 'UTC'")
        # A few thousand visits touch a few thousand sessions: probe their indexes rather than
        # hash the whole TrackedSession, which the planner may prefer when its statistics lag.
        _execute(cursor, f"SET LOCAL enable_hashjoin = {'on' if bulk else 'off'}")
        _execute(cursor, f"SET LOCAL enable_mergejoin = {'on' if bulk else 'off'}")
    for statement in d.temporary_tables():
        _execute(cursor, statement)
    for table in TEMPORARY:
        _execute(cursor, d.empty(table))
    if d.postgres and bulk:
        # Left alone, the planner walks the (tracking_id, visited_at) index to skip the sort,
        # which fetches a million heap rows at random: a sort is several times faster.
        _execute(cursor, "SET LOCAL enable_indexscan = off")
        _execute(cursor, _batch_sql(d), [lo, hi])
        _execute(cursor, "SET LOCAL enable_indexscan = on")
    else:
        _execute(cursor, _batch_sql(d), [lo, hi])
    _execute(cursor, _before_sql())
    _execute(cursor, _page_hourly_sql(d), [lo, hi, lo])
    _execute(cursor, _page_pairs_sql(d), [lo, hi, lo])
    _execute(cursor, _page_lag_changes_sql(d, sign=-1), [lo])
    _execute(cursor, _page_lag_changes_sql(d, sign=1), [hi])
    _visits_resessionize(cursor, d, hi=hi)
    _execute(cursor, _insert_sessions_sql(d))
    _execute(cursor, _merge_sessions_sql(d))
    _apply_visit_rollups(cursor, d)
    goals.goal_hits_insert(kind="page", lo=lo, hi=hi)
    # The batch's visitors: their visits may have changed, and with them their hits' visits.
    goal_rollups.goal_rollups_refresh(cursor, d, visitors_sql=f"SELECT tracking_id FROM {RESTART}")
    if d.postgres and bulk:
        # After a bulk batch, fresh statistics keep the next runs' plans right (autovacuum
        # would get there, but only after a while).
        for model in DERIVED:
            _execute(cursor, f"ANALYZE {model._meta.db_table}")
    _execute(cursor, f"SELECT coalesce(sum(pageviews), 0) FROM {BATCH}")
    return int(cursor.fetchone()[0])  # a numeric sum on PostgreSQL


TEMPORARY = (
    BATCH,
    BEFORE,
    RESTART,
    OLD,
    DELTA,
    DAY_DELTA,
    LAG_CHANGES,
    LAG_DELTA,
    LAG_DAY_DELTA,
    PAGE_PAIRS,
    PAGE_LAG_CHANGES,
    PAGE_LAG_DELTA,
    PAGE_LAG_DAY_DELTA,
    COUNTRY_CHANGES,
    COUNTRY_DELTA,
    COUNTRY_DAY_DELTA,
)
# Every table aggregation derives from the raw visits.
DERIVED = (
    TrackedSession,
    VisitSummary,
    PageHourly,
    PageDaily,
    VisitHourly,
    VisitDaily,
    VisitorHourly,
    VisitorDaily,
    PageVisitorHourly,
    PageVisitorDaily,
    CountryVisitorHourly,
    CountryVisitorDaily,
)


def _visits_resessionize(cursor, d: _Dialect, *, hi: int) -> None:
    """Redo the batch's visitors' visits from where the batch can change them, keeping the old
    rows in OLD and their lag rows negated in LAG_CHANGES and COUNTRY_CHANGES."""
    timeout = settings.TRACKER_VISIT_TIMEOUT
    _execute(cursor, _restart_sql(d), [timeout])
    old_rows, delete = _old_visits_sql()
    _execute(cursor, old_rows)
    _execute(cursor, _lag_changes_sql(d, visits=f"{OLD} v", sign=-1))
    _execute(cursor, _country_changes_sql(d, sign=-1))
    _execute(cursor, delete)
    _execute(cursor, _paths_number_sql(), [hi])
    _execute(cursor, _sessionize_sql(d), [hi, timeout])
    _execute(cursor, _lag_changes_sql(d, visits=NEW_VISITS, sign=1))
    _execute(cursor, _country_changes_sql(d, sign=1))


def _apply_visit_rollups(cursor, d: _Dialect) -> None:
    """Bring the hourly and daily visit and visitor rollups in line with the batch."""
    _execute(cursor, _delta_sql(d))
    rollup_changes_apply(
        cursor,
        d,
        changes=None,
        delta=DELTA,
        day_delta=DAY_DELTA,
        hourly=VISIT_HOURLY,
        daily=VISIT_DAILY,
        keys=["dimension", "value"],
        measures=VISIT_MEASURES,
        count="visits",
    )
    for rollup in EARLIER_HOUR_ROLLUPS:
        rollup_changes_apply(
            cursor,
            d,
            changes=rollup.changes,
            delta=rollup.delta,
            day_delta=rollup.day_delta,
            hourly=rollup.hourly,
            daily=rollup.daily,
            keys=[rollup.key, "previous_hour"],
            measures=[rollup.measure],
            count=rollup.measure,
        )
    for statement in _page_daily_sql(d):
        _execute(cursor, statement)


PAGE_VIEWS = RawSource(
    table=VISIT,
    state_name=STATE_NAME,
    noun="visits",
    aggregate_range=_aggregate_range,
    derived=DERIVED,
)


def watermark(state_name: str) -> int:
    """The last raw row id that the aggregation named ``state_name`` has counted (0 before its
    first run)."""
    return (
        AggregationState.objects.filter(name=state_name)
        .values_list("last_visit_id", flat=True)
        .first()
    ) or 0


def visits_watermark() -> int:
    """The last raw page view already aggregated: later ones have no visit yet."""
    return watermark(STATE_NAME)


def visits_aggregate(*, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Aggregate every visit above the watermark, one transaction per batch; return the count."""
    return raw_aggregate(PAGE_VIEWS, batch_size=batch_size)


def rollups_rebuild(*, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Recompute every rollup from the raw visits that remain; return the visits aggregated."""
    return raw_rebuild(PAGE_VIEWS, batch_size=batch_size)
