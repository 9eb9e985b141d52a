"""The Journeys chart: a plotly Sankey figure (plain dict) from a Journey, columns in time order.

Nodes get explicit positions: plotly's own layout pushes every node without outgoing links
(each exit) to the last column, which would hide at which step visits left.
"""

from __future__ import annotations

from dashboard.charts import ACCENT, GRID, MUTED, THIRD, chart_text
from dashboard.journeys import Journey, NodeKind

NODE_COLORS = {
    NodeKind.PAGE: ACCENT,
    NodeKind.EXIT: "#dc2626",
    NodeKind.ENTRANCE: THIRD,
    NodeKind.OTHER: MUTED,
}
LINK_COLOR = "rgba(37, 99, 235, 0.22)"
EDGE = 0.001  # plotly wants node positions strictly inside (0, 1)


def _inside(fraction: float) -> float:
    return min(max(fraction, EDGE), 1 - EDGE)


def journey_figure(journey: Journey) -> dict | None:
    """Pages as boxes per step, visits as bands between them; None when no visit flows."""
    if not journey.links:
        return None
    totals = journey.node_visits()
    nodes = journey.nodes
    index = {node: position for position, node in enumerate(nodes)}
    first = min(node.column for node in nodes)
    width = max(node.column for node in nodes) - first or 1
    column_totals: dict[int, int] = {}
    for node in nodes:
        column_totals[node.column] = column_totals.get(node.column, 0) + totals[node]
    xs, ys, stacked = [], [], {}
    for node in nodes:  # busiest first within a column: stacked from the top
        below = stacked.get(node.column, 0)
        share = totals[node] / column_totals[node.column]
        xs.append(_inside((node.column - first) / width))
        ys.append(_inside(below + share / 2))
        stacked[node.column] = below + share
    most_nodes = max(sum(1 for node in nodes if node.column == column) for column in column_totals)
    sankey = {
        "type": "sankey",
        "arrangement": "snap",
        "valueformat": ",d",
        "node": {
            "label": [chart_text(node.label) for node in nodes],
            "x": xs,
            "y": ys,
            "pad": 14,
            "thickness": 14,
            "line": {"width": 0},
            "color": [NODE_COLORS[node.kind] for node in nodes],
            "hovertemplate": "%{label}<br>%{value} visits<extra></extra>",
        },
        "link": {
            "source": [index[link.source] for link in journey.links],
            "target": [index[link.target] for link in journey.links],
            "value": [link.visits for link in journey.links],
            "color": LINK_COLOR,
            "hovertemplate": "%{source.label} → %{target.label}<br>%{value} visits<extra></extra>",
        },
    }
    layout = {
        "height": max(360, 46 * most_nodes + 80),
        "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "hoverlabel": {"bgcolor": "#1f2933", "font": {"color": "#fff"}, "bordercolor": GRID},
    }
    return {"data": [sankey], "layout": layout}
