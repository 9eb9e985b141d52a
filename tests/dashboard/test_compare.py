"""The time series' comparison with the previous period, against the reference."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from tests.dashboard import reference
from tests.dashboard.conftest import HTMX, RANGE_QUERY, body, known_visits

pytestmark = pytest.mark.django_db

PREVIOUS_LINES = ["Visits, previous period", "Visitors, previous period"]


def timeseries_figure(text: str) -> dict:
    match = re.search(r'<script id="fig-timeseries" type="application/json">(.*?)</script>', text)
    return json.loads(match.group(1))


def over_time(client, query: str) -> str:
    return body(client.get(f"/dashboard/?{query}", headers={**HTMX, "HX-Target": "over-time"}))


class CompareTests:
    def test_previous_period_drawn_dashed_under_the_current_days(self, staff_client, known_data):
        figure = timeseries_figure(over_time(staff_client, f"{RANGE_QUERY}&compare=1"))
        lines = {trace["name"]: trace for trace in figure["data"]}
        visits = reference.split_visits(known_visits(), timeout=1800)
        previous = reference.series(
            visits,
            known_visits(),
            start=dt.datetime(2026, 1, 7, tzinfo=dt.UTC),
            end=dt.datetime(2026, 1, 10, tzinfo=dt.UTC),
            hourly=False,
            zone="UTC",
        )
        for name, measure in zip(PREVIOUS_LINES, ["visits", "visitors"], strict=True):
            assert lines[name]["line"]["dash"] == "dash"
            assert lines[name]["y"] == [point[measure] for point in previous]
            # Drawn under the current period's days, hovering with the previous ones.
            assert lines[name]["x"] == lines["Visits"]["x"]
            assert lines[name]["customdata"] == ["2026-01-07", "2026-01-08", "2026-01-09"]
        assert lines["Visits, previous period"]["y"] == [0, 1, 0]  # S0's bounce on the 8th

    @pytest.mark.parametrize("query", ["browser=Chrome", "browser__not=Chrome", "page=/signup/"])
    def test_previous_period_follows_the_filters(self, staff_client, known_data, query):
        figure = timeseries_figure(over_time(staff_client, f"{RANGE_QUERY}&{query}&compare=1"))
        lines = {trace["name"]: trace for trace in figure["data"]}
        views = known_visits()
        visits = reference.split_visits(views, timeout=1800)
        if query == "browser=Chrome":
            visits = [visit for visit in visits if visit.value("browser") == "Chrome"]
        elif query == "browser__not=Chrome":
            visits = [visit for visit in visits if visit.value("browser") != "Chrome"]
        else:
            visits = [visit for visit in visits if "/signup/" in [v.path for v in visit.views]]
        for period_start, (visits_line, visitors_line) in [
            (dt.datetime(2026, 1, 7, tzinfo=dt.UTC), PREVIOUS_LINES),
            (dt.datetime(2026, 1, 10, tzinfo=dt.UTC), ["Visits", "Visitors"]),
        ]:
            expected = reference.series(
                visits,
                views,
                start=period_start,
                end=period_start + dt.timedelta(days=3),
                hourly=False,
                zone="UTC",
            )
            assert lines[visits_line]["y"] == [point["visits"] for point in expected]
            assert lines[visitors_line]["y"] == [point["visitors"] for point in expected]

    def test_off_by_default_and_the_switch_toggles_it(self, staff_client, known_data):
        text = over_time(staff_client, RANGE_QUERY)
        names = {trace["name"] for trace in timeseries_figure(text)["data"]}
        assert names.isdisjoint(PREVIOUS_LINES)
        assert 'aria-checked="false"' in text
        assert f'href="?{RANGE_QUERY.replace("&", "&amp;")}&amp;compare=1"' in text
        text = over_time(staff_client, f"{RANGE_QUERY}&compare=1")
        assert 'aria-checked="true"' in text
        assert f'href="?{RANGE_QUERY.replace("&", "&amp;")}"' in text
        assert "Visits, previous period</th>" in text  # the table shows both too

    def test_compare_survives_a_range_switch(self, staff_client, known_data):
        text = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}&compare=1"))
        assert "range=7d&amp;compare=1" in text

    def test_bad_compare_value_is_400(self, staff_client, known_data):
        response = staff_client.get(f"/dashboard/?{RANGE_QUERY}&compare=maybe")
        assert response.status_code == 400
        assert "compare" in body(response)
