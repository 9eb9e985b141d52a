"""Pure functions from a funnel report (``dashboard.funnels.funnel_report``) to a plotly
figure, as plain dicts ready for ``json_script``, like ``dashboard.charts``."""

from __future__ import annotations

from dashboard.charts import ACCENT, MUTED, _figure, _layout, chart_text

STEP_HEIGHT = 44  # px per step: eight steps stay readable


def funnel_figure(report: dict) -> dict:
    """Plotly's funnel chart: one bar per step, its visitors, and the share of the first step.

    Goal names are staff-chosen but still escaped: plotly reads labels as markup.
    """
    steps = report["steps"]
    labels = [f"{number}. {chart_text(step['name'])}" for number, step in enumerate(steps, 1)]
    trace = {
        "type": "funnel",
        "y": labels,
        "x": [step["visitors"] for step in steps],
        "textinfo": "value+percent initial",
        "marker": {"color": ACCENT},
        "connector": {"line": {"color": MUTED, "width": 1}},
        "hovertemplate": "%{y}<br>%{x} visitors<br>%{percentInitial:.1%} of the first step"
        "<extra></extra>",
    }
    layout = _layout(
        height=80 + STEP_HEIGHT * len(steps),
        margin={"l": 16, "r": 16, "t": 8, "b": 8},
        xaxis={"visible": False, "fixedrange": True},
        yaxis={"automargin": True, "fixedrange": True},
    )
    return _figure([trace], layout)
