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
from dataclasses import dataclass
from enum import StrEnum

from django.db import connection
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
    visits that listed the page), elsewhere a JSON array.
    """
    adapt = connection.ops.adapt_datetimefield_value
    params: list = [adapt(start), adapt(end)]
    chosen_filter = ""
    if visits is not None:
        subquery, subquery_params = visits.values("id").query.sql_with_params()
        chosen_filter = f"AND s.id IN ({subquery})"
        params.extend(subquery_params)
    if connection.vendor == "postgresql":
        # 1-based; NULL out of range. The containment test is what the GIN index answers.
        at, length, element, first = (
            "array_position(s.pages, %s::integer)",
            "cardinality(s.pages)",
            "c.pages[{}]",
            1,
        )
        chosen_filter += " AND s.pages @> ARRAY[%s]::integer[]"
        params.append(page)
    else:
        # 0-based: the key of the first element equal to the page.
        at, length, element, first = (
            "(SELECT min(key) FROM json_each(s.pages) WHERE value = %s)",
            "json_array_length(s.pages)",
            "json_extract(c.pages, '$[' || ({}) || ']')",
            0,
        )
    if direction is Direction.FORWARD:
        offsets = range(steps)
        neighbour_index = "c.at + o.column1 + 1"
        inside = f"c.at + o.column1 < c.length + {first}"
    else:
        offsets = range(1 - steps, 1)
        neighbour_index = "c.at + o.column1 - 1"
        inside = f"c.at + o.column1 >= {first}"
    values = ", ".join(f"({offset})" for offset in offsets)
    here = element.format("c.at + o.column1")
    neighbour = (
        f"CASE WHEN {neighbour_index} >= {first} THEN {element.format(neighbour_index)} END"
    )
    summary, paths = VisitSummary._meta.db_table, PagePath._meta.db_table
    sql = f"""
        WITH chosen AS (
            SELECT s.pages, {at} AS at, {length} AS length
            FROM {summary} s
            WHERE s.started_at >= %s AND s.started_at < %s {chosen_filter}
        ),
        links AS (
            SELECT o.column1 AS offset_, {here} AS page, {neighbour} AS neighbour,
                count(*) AS visits
            FROM chosen c JOIN (VALUES {values}) o ON {inside}
            WHERE c.at IS NOT NULL
            GROUP BY 1, 2, 3
        )
        SELECT l.offset_, p.path, n.path, l.visits
        FROM links l JOIN {paths} p ON p.id = l.page LEFT JOIN {paths} n ON n.id = l.neighbour
    """
    return sql, [page, *params]


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
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(int(offset), page, other, int(count)) for offset, page, other, count in cursor]


def _raw_links(
    rows: list[tuple[int, str, str | None, int]], *, direction: Direction
) -> list[JourneyLink]:
    links = []
    for offset, page, other, count in rows:
        here = JourneyNode(offset, NodeKind.PAGE, page)
        if direction is Direction.FORWARD:
            column = offset + 1
            after = (
                JourneyNode(column, NodeKind.EXIT)
                if other is None
                else JourneyNode(column, NodeKind.PAGE, other)
            )
            links.append(JourneyLink(column, here, after, count))
        else:
            column = offset - 1
            before = (
                JourneyNode(column, NodeKind.ENTRANCE)
                if other is None
                else JourneyNode(column, NodeKind.PAGE, other)
            )
            links.append(JourneyLink(1 - offset, before, here, count))
    return links


def fold_links(links: list[JourneyLink], *, direction: Direction, keep: int) -> list[JourneyLink]:
    """Keep the ``keep`` busiest pages of each step (by visits, ties by path); fold the others
    into that step's "other pages" node and add up the links that then coincide."""
    through: dict[JourneyNode, int] = defaultdict(int)
    for link in links:
        node = link.target if direction is Direction.FORWARD else link.source
        through[node] += link.visits
    by_column: dict[int, list[JourneyNode]] = defaultdict(list)
    for node in through:
        if node.kind is NodeKind.PAGE:
            by_column[node.column].append(node)
    folded: set[JourneyNode] = set()
    for nodes in by_column.values():
        nodes.sort(key=lambda node: (-through[node], node.path))
        folded.update(nodes[keep:])

    def fold(node: JourneyNode) -> JourneyNode:
        return JourneyNode(node.column, NodeKind.OTHER) if node in folded else node

    totals: dict[tuple[int, JourneyNode, JourneyNode], int] = defaultdict(int)
    for link in links:
        totals[(link.step, fold(link.source), fold(link.target))] += link.visits
    return sorted(
        (
            JourneyLink(step, source, target, count)
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
    links = fold_links(_raw_links(rows, direction=direction), direction=direction, keep=keep)
    total = sum(link.visits for link in links if link.step == 1)
    return Journey(direction, path, steps, total, links)
