"""CSV exports of a range: rows as spreadsheets read them, without formula injection.

Paths, referrers and campaign names come from visitors: a cell starting with ``=``, ``+``, ``-``
or ``@`` would be run as a formula by spreadsheet programs, so such cells get a leading quote.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from dashboard import queries

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SESSION_COLUMNS = [
    "tracking_id",
    "started_at",
    "last_seen",
    "duration_seconds",
    "pageviews",
    "bounced",
    "entry_path",
    "exit_path",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "browser",
    "os",
    "device",
    "ended",
]
PAGE_COLUMNS = ["path", "pageviews", "sessions"]


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


def session_rows(*, start, end, path: str | None) -> Iterator[list[object]]:
    """Sessions in SESSION_COLUMNS order; times in UTC ISO 8601."""
    index = {name: position for position, name in enumerate(queries.SESSION_FIELDS)}
    for row in queries.sessions_for_export(start=start, end=end, path=path):
        pageviews = row[index["pageviews"]]
        yield [
            row[index["tracking_id"]],
            row[index["first_seen"]].isoformat(),
            row[index["last_seen"]].isoformat(),
            row[index["duration_seconds"]],
            pageviews,
            int(pageviews == 1),
            row[index["entry_path"]],
            row[index["exit_path"]],
            row[index["referrer_host"]],
            row[index["utm_source"]],
            row[index["utm_medium"]],
            row[index["utm_campaign"]],
            row[index["browser"]],
            row[index["os"]],
            row[index["device"]],
            int(row[index["ended"]]),
        ]


def page_rows(*, start, end, path: str | None) -> Iterator[list[object]]:
    for row in queries.top_pages(start=start, end=end, limit=None, path=path):
        yield [row["path"], row["pageviews"], row["sessions"]]
