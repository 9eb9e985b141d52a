"""CSV exports of a range: rows as spreadsheets read them, without formula injection.

Paths, referrers and campaign names come from visitors: a cell starting with ``=``, ``+``, ``-``
or ``@`` would be run as a formula by spreadsheet programs, so such cells get a leading quote.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator

from dashboard import event_queries, filtered_queries, queries
from dashboard.filters import NO_FILTERS, Filters

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# One row per visit started in the range: the per-visit table's fields, as queries name them.
VISIT_COLUMNS = list(queries.VISIT_FIELDS)
PAGE_COLUMNS = ["path", "pageviews", "visitors"]
EVENT_COLUMNS = event_queries.EVENT_COLUMNS


def safe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write returns the line, for streaming a csv.writer."""

    def write(self, line: str) -> str:
        return line


def csv_lines(header: list[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([safe_cell(value) for value in row])


def _cell(value: object) -> object:
    """Times in UTC ISO 8601; everything else as the database gives it."""
    return value.isoformat() if isinstance(value, dt.datetime) else value


def visit_rows(
    *, start, end, path: str | None, filters: Filters = NO_FILTERS
) -> Iterator[list[object]]:
    """Visits in VISIT_COLUMNS order, oldest first."""
    rows = (
        filtered_queries.visits_for_export_filtered(filters=filters, start=start, end=end)
        if filters
        else queries.visits_for_export(start=start, end=end, path=path)
    )
    for row in rows:
        yield [_cell(value) for value in row]


def page_rows(
    *, start, end, path: str | None, filters: Filters = NO_FILTERS
) -> Iterator[list[object]]:
    rows = (
        filtered_queries.top_pages_filtered(filters=filters, start=start, end=end, limit=None)
        if filters
        else queries.top_pages(start=start, end=end, limit=None, path=path)
    )
    for row in rows:
        yield [row[column] for column in PAGE_COLUMNS]


def event_rows(
    *, start, end, path: str | None, filters: Filters = NO_FILTERS
) -> Iterator[list[object]]:
    """Event names of the range (the path filter alone does not apply: events have no page
    rollup); under filters, the events of the filtered visits."""
    rows = (
        filtered_queries.events_filtered(filters=filters, start=start, end=end)
        if filters
        else event_queries.event_totals(start=start, end=end)
    )
    for row in rows:
        yield [row[column] for column in EVENT_COLUMNS]
