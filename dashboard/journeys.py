# ruff: noqa: S608 - only table and column names are interpolated; values are parameters.
"""Journeys: page-to-page flows within the visits of a range, forward from a page or backward
to it, read from each visit's list of pages (VisitSummary.pages, kept by aggregation in the
order viewed, so journeys outlive the pruned raw rows). Visits count in the range in which they
started.

Forward from page P: each visit that viewed P, from its first view of P, for ``steps`` more
pages; a visit that ends sooner flows into an exit node at the step after its last page.
Backward to P: the ``steps`` pages before the visit's first view of P; a visit that began
sooner flows from an entrance node. A page viewed twice appears again at a later step (a loop).
At each step the ``keep`` busiest pages by visits stay, the others fold into "other pages".
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from enum import StrEnum

from django.db import connection, transaction
from django.db.models import Count, QuerySet

from dashboard import queries
from tracker.models import PagePath, VisitSummary

STEPS_MIN, STEPS_MAX, STEPS_DEFAULT = 2, 5, 3
KEEP_DEFAULT = 8


class Direction(StrEnum):
    FORWARD = "from"  # the query parameter that chooses it
    BACKWARD = "to"


class NodeKind(StrEnum):
    PAGE = "page"
    EXIT = "exit"  # the visit ended
    ENTRANCE = "entrance"  # the visit began
    OTHER = "other"  # the step's thinner pages, folded


NODE_LABELS = {
    NodeKind.EXIT: "(exit)",
    NodeKind.ENTRANCE: "(entrance)",
    NodeKind.OTHER: "(other pages)",
}


@dataclass(frozen=True, order=True)
class JourneyNode:
    """One box of the chart: a page (or exit, entrance, other pages) at a column.

    Column 0 is the chosen page; forward columns count up, backward ones down.
    """

    column: int
    kind: NodeKind
    path: str = ""

    @property
    def label(self) -> str:
        return self.path if self.kind is NodeKind.PAGE else NODE_LABELS[self.kind]


@dataclass(frozen=True)
class JourneyLink:
    step: int  # 1 for the link that touches the chosen page, then 2, 3... away from it
    source: JourneyNode
    target: JourneyNode
    visits: int


@dataclass(frozen=True)
class Journey:
    direction: Direction
    path: str  # the chosen page; "" when the range has no visit to start from
    steps: int
    visits: int  # visits that viewed the chosen page (each flows through every step once)
    links: list[JourneyLink]

    def node_visits(self) -> dict[JourneyNode, int]:
        """Visits through each node: a visit passes once through every node it touches."""
        totals: dict[JourneyNode, int] = defaultdict(int)
        for link in self.links:
            node = link.target if self.direction is Direction.FORWARD else link.source
            totals[node] += link.visits
        if self.links:
            totals[JourneyNode(0, NodeKind.PAGE, self.path)] = self.visits
        return dict(totals)

    @property
    def nodes(self) -> list[JourneyNode]:
        """Every node, column by column (in time order), busiest first within a column."""
        totals = self.node_visits()
        return sorted(totals, key=lambda node: (node.column, -totals[node], node))


def top_entry_page(
    *, start: dt.datetime, end: dt.datetime, visits: QuerySet[VisitSummary] | None = None
) -> str:
    """The entry page of the most visits started in [start, end) ("" if none): ties by path."""
    if visits is None:
        rows = queries.dimension_breakdown(
            start=start, end=end, dimensions=[queries.Dimension.ENTRY_PATH], limit=1
        )[queries.Dimension.ENTRY_PATH]
        return rows[0]["value"] if rows else ""
    top = (
        visits.filter(started_at__gte=start, started_at__lt=end)
        .values("entry_path")
        .annotate(count=Count("id"))
        .order_by("-count", "entry_path")
        .first()
    )
    return top["entry_path"] if top else ""


def _link_sql(step: int, *, sign: int) -> str:
    """The links ``step`` views away from the chosen page (x0, a parameter) to the next one
    away, summed over the slices that reach that far."""
    here, there = ("CAST(%s AS integer)", "x1") if step == 0 else (f"x{step}", f"x{step + 1}")
    reached = "" if step == 0 else f"WHERE {here} IS NOT NULL"
    grouped = there if step == 0 else f"{here}, {there}"
    return f"""SELECT {sign * step} AS offset_, {here} AS page, {there} AS neighbour,
        sum(visits) AS visits FROM slices {reached} GROUP BY {grouped}"""


def flows_sql(
    *,
    start: dt.datetime,
    end: dt.datetime,
    page: int,
    direction: Direction,
    steps: int,
    visits: QuerySet[VisitSummary] | None,
) -> tuple[str, list]:
    """The query of _link_counts, on its own so that it can be EXPLAINed.

    It reads each visit's list of page ids: on PostgreSQL an array (the GIN index finds the
    visits that listed the page), elsewhere a JSON array. The visits are first grouped by the
    ``steps`` pages after (or before) their first view of the page, which many share, and the
    links are counted from those groups (1.4 s from the top page at 10M page views, against
    1.9 s visit by visit).
    """
    adapt = connection.ops.adapt_datetimefield_value
    params: list = [page, adapt(start), adapt(end)]
    chosen_filter = ""
    if visits is not None:
        subquery, subquery_params = visits.values("id").query.sql_with_params()
        chosen_filter = f"AND s.id IN ({subquery})"
        params.extend(subquery_params)
    if connection.vendor == "postgresql":
        # 1-based; out of range (0 and below included) reads NULL. The containment test is
        # what the GIN index answers.
        at = "array_position(s.pages, %s::integer)"
        element = "c.pages[c.at + ({})]"
        chosen_filter += " AND s.pages @> ARRAY[%s]::integer[]"
        params.append(page)
    else:
        # 0-based: the key of the first element equal to the page; a negative key is no path.
        at = "(SELECT min(key) FROM json_each(s.pages) WHERE value = %s)"
        element = (
            "CASE WHEN c.at + ({0}) >= 0"
            " THEN json_extract(c.pages, '$[' || (c.at + ({0})) || ']') END"
        )
    sign = 1 if direction is Direction.FORWARD else -1
    # x1..x<steps>: the pages 1..steps views after (before) the chosen one, NULL past the end.
    columns = [f"x{step}" for step in range(1, steps + 1)]
    around = ", ".join(
        f"{element.format(sign * step)} AS {column}" for step, column in enumerate(columns, 1)
    )
    links = " UNION ALL ".join(_link_sql(step, sign=sign) for step in range(steps))
    params.append(page)
    summary, paths = VisitSummary._meta.db_table, PagePath._meta.db_table
    sql = f"""
        WITH chosen AS (
            SELECT s.pages, {at} AS at
            FROM {summary} s
            WHERE s.started_at >= %s AND s.started_at < %s {chosen_filter}
        ),
        slices AS (
            SELECT {around}, count(*) AS visits FROM chosen c
            WHERE c.at IS NOT NULL
            GROUP BY {", ".join(columns)}
        ),
        links AS ({links})
        SELECT l.offset_, p.path, n.path, l.visits
        FROM links l JOIN {paths} p ON p.id = l.page LEFT JOIN {paths} n ON n.id = l.neighbour
    """
    return sql, params


def _link_counts(
    *,
    start: dt.datetime,
    end: dt.datetime,
    path: str,
    direction: Direction,
    steps: int,
    visits: QuerySet[VisitSummary] | None,
) -> list[tuple[int, str, str | None, int]]:
    """(offset from the chosen page, path there, the page after (forward) or before (backward)
    it in the visit or None at the visit's end or start, visits), counted in the database."""
    page = PagePath.objects.filter(path=path).values_list("id", flat=True).first()
    if page is None:
        return []
    sql, params = flows_sql(
        start=start, end=end, page=page, direction=direction, steps=steps, visits=visits
    )
    postgres = connection.vendor == "postgresql"
    with transaction.atomic() if postgres else nullcontext(), connection.cursor() as cursor:
        if postgres:
            # The range's slices hash in memory rather than spill to disk; compiling the plan
            # (JIT) costs more than it saves (~300 ms of 1.5 s at 10M page views).
            cursor.execute("SET LOCAL work_mem = '64MB'")
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        return [(int(offset), page, other, int(count)) for offset, page, other, count in cursor]


def fold_links(
    rows: list[tuple[int, str, str | None, int]], *, direction: Direction, keep: int
) -> list[JourneyLink]:
    """The links of _link_counts' rows with the ``keep`` busiest pages of each step kept (by
    visits, ties by path), the others folded into that step's "other pages" node, and the
    links that then coincide added up.

    Tens of thousands of rows come in and a few dozen links go out: the rows are folded as
    plain tuples, and only the links that remain become nodes.
    """
    forward = direction is Direction.FORWARD
    away = 1 if forward else -1  # from a row's page to its other page, in columns
    through: dict[tuple[int, str], int] = defaultdict(int)  # (column, path) -> visits
    for offset, _, other, count in rows:
        if other is not None:
            through[(offset + away, other)] += count
    by_column: dict[int, list[str]] = defaultdict(list)
    for column, path in through:
        by_column[column].append(path)
    kept: set[tuple[int, str]] = set()
    for column, paths in by_column.items():
        paths.sort(key=lambda path: (-through[(column, path)], path))
        kept.update((column, path) for path in paths[:keep])
    end_kind = NodeKind.EXIT if forward else NodeKind.ENTRANCE

    def node(column: int, path: str | None) -> tuple[int, NodeKind, str]:
        if path is None:
            return (column, end_kind, "")
        if column == 0 or (column, path) in kept:  # column 0: the chosen page
            return (column, NodeKind.PAGE, path)
        return (column, NodeKind.OTHER, "")

    totals: dict[tuple, int] = defaultdict(int)
    for offset, page, other, count in rows:
        here, there = node(offset, page), node(offset + away, other)
        step = abs(offset) + 1
        totals[(step, here, there) if forward else (step, there, here)] += count
    return sorted(
        (
            JourneyLink(step, JourneyNode(*source), JourneyNode(*target), count)
            for (step, source, target), count in totals.items()
        ),
        key=lambda link: (link.step, -link.visits, link.source, link.target),
    )


def journey(
    *,
    start: dt.datetime,
    end: dt.datetime,
    path: str | None = None,
    direction: Direction = Direction.FORWARD,
    steps: int = STEPS_DEFAULT,
    keep: int = KEEP_DEFAULT,
    visits: QuerySet[VisitSummary] | None = None,
) -> Journey:
    """The flows of the visits started in [start, end) (those of ``visits`` if given) through
    ``path`` (default: the range's top entry page), ``steps`` pages forward or backward."""
    if not STEPS_MIN <= steps <= STEPS_MAX:
        raise ValueError(f"steps must be {STEPS_MIN} to {STEPS_MAX}")
    if not path:
        path = top_entry_page(start=start, end=end, visits=visits)
    if not path:
        return Journey(direction, "", steps, 0, [])
    rows = _link_counts(
        start=start, end=end, path=path, direction=direction, steps=steps, visits=visits
    )
    links = fold_links(rows, direction=direction, keep=keep)
    total = sum(link.visits for link in links if link.step == 1)
    return Journey(direction, path, steps, total, links)
