# ruff: noqa: S608 - only table and column names are interpolated; values are parameters.
"""Journeys: page-to-page flows within the visits of a range, forward from a page or backward
to it, read from the raw page views (the only rows that keep their order).

A page view belongs to the visit of its visitor that started last at or before it (by time,
then insertion order, as aggregation splits visits): the window over each visit's page views
numbers them, and a visit keeps its first ``pageviews`` of them (a page view of the next visit
at the very same instant comes after). Visits count in the range in which they started.

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
from tracker.models import AggregationState, Visit, VisitSummary
from tracker.rollups import STATE_NAME

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


def _watermark() -> int:
    """The last aggregated raw page view: later ones have no visit yet."""
    return (
        AggregationState.objects.filter(name=STATE_NAME)
        .values_list("last_visit_id", flat=True)
        .first()
    ) or 0


def flows_sql(
    *,
    start: dt.datetime,
    end: dt.datetime,
    path: str,
    direction: Direction,
    steps: int,
    visits: QuerySet[VisitSummary] | None,
    watermark: int,
) -> tuple[str, list]:
    """The query of _link_counts, on its own so that it can be EXPLAINed."""
    adapt = connection.ops.adapt_datetimefield_value
    params: list = [adapt(start), adapt(end)]
    chosen_filter = ""
    if visits is not None:
        subquery, subquery_params = visits.values("id").query.sql_with_params()
        chosen_filter = f"AND s.id IN ({subquery})"
        params.extend(subquery_params)
    summary, raw = VisitSummary._meta.db_table, Visit._meta.db_table
    if direction is Direction.FORWARD:
        # The page after: none once the visit's own page views end.
        neighbour = "CASE WHEN position < pageviews THEN neighbour_path END"
        offsets = "offset_ BETWEEN 0 AND %s"
        bound = steps - 1
        window_function = "lead"
    else:
        neighbour = "neighbour_path"  # NULL at the visit's first page view
        offsets = "offset_ BETWEEN %s AND 0"
        bound = 1 - steps
        window_function = "lag"
    sql = f"""
        WITH chosen AS (
            SELECT s.id, s.tracking_id, s.started_at, s.ended_at, s.first_pageview_id,
                s.pageviews
            FROM {summary} s
            WHERE s.started_at >= %s AND s.started_at < %s {chosen_filter}
                AND EXISTS (
                    SELECT 1 FROM {raw} p
                    WHERE p.tracking_id = s.tracking_id AND p.path = %s
                        AND p.visited_at >= s.started_at AND p.visited_at <= s.ended_at
                )
        ),
        views AS (
            SELECT c.id AS visit_id, c.pageviews, v.path,
                row_number() OVER visit AS position,
                {window_function}(v.path) OVER visit AS neighbour_path
            FROM chosen c
            JOIN {raw} v ON v.tracking_id = c.tracking_id
                AND v.visited_at >= c.started_at AND v.visited_at <= c.ended_at
                AND (v.visited_at > c.started_at OR v.id >= c.first_pageview_id)
                AND v.id <= %s
            WINDOW visit AS (PARTITION BY c.id ORDER BY v.visited_at, v.id)
        ),
        placed AS (
            SELECT path, {neighbour} AS neighbour,
                position - min(CASE WHEN path = %s THEN position END)
                    OVER (PARTITION BY visit_id) AS offset_
            FROM views
            WHERE position <= pageviews
        )
        SELECT offset_, path, neighbour, count(*) FROM placed
        WHERE {offsets}
        GROUP BY offset_, path, neighbour
    """
    params.extend([path, watermark, path, bound])
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
    watermark = _watermark()
    if not watermark:
        return []
    sql, params = flows_sql(
        start=start,
        end=end,
        path=path,
        direction=direction,
        steps=steps,
        visits=visits,
        watermark=watermark,
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
