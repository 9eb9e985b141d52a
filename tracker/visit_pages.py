# ruff: noqa: S608 - only table and column names are interpolated; values are parameters.
"""Page lists for the visits stored before VisitSummary.pages existed.

Aggregation writes each visit's pages as it splits the visits. Visits split before that get
theirs here, from the raw page views still kept: the visit's page views are those of its
visitor from its first one (by time, then id) to its end, its first ``pageviews`` of them (a
page view of the next visit at the very same instant comes after). A visit whose raw rows are
pruned gets an empty list, so that it is not looked at again; journeys could not show it before
either.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction

from tracker.goal_rollups import watermarks_lock
from tracker.models import PagePath, Visit, VisitSummary
from tracker.rollups import visits_watermark

logger = logging.getLogger(__name__)

CHUNK_VISITS = 50_000  # per transaction: the lock is let go between chunks
VISITS = VisitSummary._meta.db_table
VISIT = Visit._meta.db_table
PATHS = PagePath._meta.db_table


def _pages_sql(*, postgres: bool) -> tuple[str, str]:
    """(number the chunk's paths, write the chunk's page lists); params: watermark, the chunk's
    first and last id."""
    views = f"""
        SELECT s.id AS visit_id, s.pageviews, v.path, v.visited_at, v.id,
            row_number() OVER (PARTITION BY s.id ORDER BY v.visited_at, v.id) AS position
        FROM {VISITS} s JOIN {VISIT} v ON v.tracking_id = s.tracking_id
            AND v.visited_at >= s.started_at AND v.visited_at <= s.ended_at
            AND (v.visited_at > s.started_at OR v.id >= s.first_pageview_id)
            AND v.id <= %s
        WHERE s.id >= %s AND s.id <= %s AND s.pages IS NULL
    """
    number = f"""
        INSERT INTO {PATHS} (path)
        SELECT DISTINCT path FROM ({views}) views
        WHERE NOT EXISTS (SELECT 1 FROM {PATHS} p WHERE p.path = views.path)
        ON CONFLICT (path) DO NOTHING
    """
    if postgres:
        listed = f"""
            SELECT visit_id, array_agg(p.id ORDER BY visited_at, views.id) AS pages
            FROM ({views}) views JOIN {PATHS} p ON p.path = views.path
            WHERE position <= pageviews
            GROUP BY visit_id
        """
    else:
        listed = f"""
            SELECT visit_id, max(pages) AS pages FROM (
                SELECT visit_id, json_group_array(p.id) OVER (PARTITION BY visit_id
                    ORDER BY visited_at, views.id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS pages
                FROM ({views}) views JOIN {PATHS} p ON p.path = views.path
                WHERE position <= pageviews
            ) ordered
            GROUP BY visit_id
        """
    write = f"""
        UPDATE {VISITS} SET pages = listed.pages FROM ({listed}) listed
        WHERE {VISITS}.id = listed.visit_id
    """
    return number, write


def _chunk_fill(*, watermark: int, chunk: int) -> int:
    """Fill the first ``chunk`` visits without pages; return how many there were."""
    ids = list(
        VisitSummary.objects.filter(pages=None).order_by("id").values_list("id", flat=True)[:chunk]
    )
    if not ids:
        return 0
    # The first ``chunk`` visits without pages are those without pages between these two ids.
    bounds = [watermark, ids[0], ids[-1]]
    number, write = _pages_sql(postgres=connection.vendor == "postgresql")
    with connection.cursor() as cursor:
        cursor.execute(number, bounds)
        cursor.execute(write, bounds)
    # No raw rows left: an empty list, not NULL, so the catch-up ends.
    VisitSummary.objects.filter(id__gte=ids[0], id__lte=ids[-1], pages=None).update(pages=[])
    return len(ids)


def visit_pages_catch_up(*, chunk: int = CHUNK_VISITS) -> int:
    """Give every visit without a page list its list from the raw rows; return how many.
    A no-op, taking no lock, when there are none."""
    filled = 0
    while VisitSummary.objects.filter(pages=None).exists():
        with transaction.atomic():
            watermarks_lock()
            filled += _chunk_fill(watermark=visits_watermark(), chunk=chunk)
    if filled:
        logger.info("listed the pages of %d visits stored before page lists", filled)
    return filled
