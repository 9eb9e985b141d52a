"""One aggregation run, as the ``aggregate_visits`` task and command both do it: new page views
and events into their rollups, then what an upgrade or a bulk edit left for the goals, funnels
and visits' page lists to catch up with."""

from __future__ import annotations

from typing import NamedTuple

from tracker import event_rollups, funnel_runs, goal_rollups, rollups, visit_pages


class AggregationCounts(NamedTuple):
    visits: int  # page views aggregated
    events: int


def aggregation_run(*, batch_size: int = rollups.DEFAULT_BATCH_SIZE) -> AggregationCounts:
    """Aggregate what arrived since the last run; return how many page views and events.

    Goals catch up before funnels: a funnel's runs read its goals' hits as counted.
    """
    visits = rollups.visits_aggregate(batch_size=batch_size)
    events = event_rollups.events_aggregate()
    goal_rollups.goal_rollups_catch_up()
    funnel_runs.funnel_runs_catch_up()
    visit_pages.visit_pages_catch_up()
    return AggregationCounts(visits=visits, events=events)
