from __future__ import annotations

import datetime as dt

import pytest

from dashboard import charts
from dashboard.forms import DashboardFilterForm

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 15, 13, 25, tzinfo=UTC)


def period_of(query: dict, now: dt.datetime = NOW):
    form = DashboardFilterForm(query)
    assert form.is_valid(), form.errors
    return form.period(now=now)


class PeriodTests:
    def test_default_is_seven_days_ending_tonight(self):
        period = period_of({})
        assert period.range_key == "7d"
        assert period.start == dt.datetime(2026, 3, 9, tzinfo=UTC)
        assert period.end == dt.datetime(2026, 3, 16, tzinfo=UTC)
        assert period.previous.start == dt.datetime(2026, 3, 2, tzinfo=UTC)

    def test_24h_is_24_whole_hours_with_the_current_one(self):
        period = period_of({"range": "24h"})
        assert period.end == dt.datetime(2026, 3, 15, 14, tzinfo=UTC)
        assert period.span == dt.timedelta(hours=24)
        assert period.hourly

    def test_today_from_midnight(self):
        period = period_of({"range": "today"})
        assert period.start == dt.datetime(2026, 3, 15, tzinfo=UTC)
        assert period.end == dt.datetime(2026, 3, 15, 14, tzinfo=UTC)

    def test_custom_is_inclusive_in_site_time_zone(self, settings):
        settings.TIME_ZONE = "Europe/Paris"
        period = period_of({"start": "2026-03-01", "end": "2026-03-02"})
        assert period.start == dt.datetime(2026, 2, 28, 23, tzinfo=UTC)
        assert period.end == dt.datetime(2026, 3, 2, 23, tzinfo=UTC)
        assert period.hourly

    @pytest.mark.parametrize("days", [30, 90])
    def test_long_ranges_are_daily(self, days):
        period = period_of({"range": f"{days}d"})
        assert period.span == dt.timedelta(days=days)
        assert not period.hourly

    def test_query_string_keeps_path_and_switches_range(self):
        form = DashboardFilterForm({"start": "2026-03-01", "end": "2026-03-02", "path": "/a b/"})
        assert form.is_valid()
        assert form.query_string(range="30d") == "range=30d&path=%2Fa+b%2F"
        assert form.query_string(path=None) == "start=2026-03-01&end=2026-03-02"


class ChartTests:
    def test_labels_are_escaped_for_plotly(self):
        figure = charts.busiest_visits_figure(
            [
                {
                    "tracking_id": "01900000-0000-7000-8000-0000a1b2c3d4",
                    "number": 2,
                    "entry_path": "<img src=x onerror=alert(1)>",
                    "pageviews": 3,
                    "duration_seconds": 10,
                }
            ]
        )
        label = figure["data"][0]["y"][0]
        assert "<" not in label
        assert label == "a1b2c3d4 #2 · &lt;img src=x onerror=alert(1)&gt;"

    def test_busiest_visits_busiest_on_top(self):
        visits = [
            {
                "tracking_id": f"{n}" * 8,
                "number": 1,
                "entry_path": "/",
                "pageviews": pages,
                "duration_seconds": 0,
            }
            for n, pages in ((1, 9), (2, 4))
        ]
        figure = charts.busiest_visits_figure(visits)
        assert figure["data"][0]["x"] == [4, 9]  # plotly draws the last category on top

    def test_busiest_visits_labels_are_distinct(self):
        """Ids minted in the same minute share their start; plotly would merge equal labels."""
        visits = [
            {
                "tracking_id": f"01900000-0000-7000-8000-00000000000{n}",
                "number": number,
                "entry_path": "/",
                "pageviews": 3,
                "duration_seconds": 0,
            }
            for n, number in ((1, 1), (2, 1), (2, 2))
        ]
        labels = charts.busiest_visits_figure(visits)["data"][0]["y"]
        assert len(set(labels)) == 3

    def test_pages_per_visit_has_every_bucket_in_order(self):
        histogram = [{"bucket": b, "visits": n} for b, n in [("1", 4), ("2", 0), ("21+", 1)]]
        figure = charts.pages_per_visit_figure(histogram)
        assert figure["data"][0]["x"] == ["1", "2", "21+"]
        assert figure["data"][0]["y"] == [4, 0, 1]
        assert figure["layout"]["yaxis"]["title"]["text"] == "Visits"

    def test_visits_per_visitor_counts_visitors(self):
        histogram = [{"bucket": b, "visitors": n} for b, n in [("1", 7), ("2", 2), ("11+", 1)]]
        figure = charts.visits_per_visitor_figure(histogram)
        assert figure["data"][0]["x"] == ["1", "2", "11+"]
        assert figure["data"][0]["y"] == [7, 2, 1]
        assert figure["layout"]["yaxis"]["title"]["text"] == "Visitors"

    def test_timeseries_uses_local_wall_clock(self, settings):
        settings.TIME_ZONE = "Europe/Paris"
        points = [
            {
                "t": dt.datetime(2026, 3, 1, 23, tzinfo=UTC),
                "pageviews": 3,
                "visits": 2,
                "visitors": 1,
            }
        ]
        figure = charts.timeseries_figure(points, hourly=True)
        assert figure["data"][0]["x"] == ["2026-03-02 00:00"]
        assert [trace["name"] for trace in figure["data"]] == ["Pageviews", "Visits", "Visitors"]
        assert [trace["y"] for trace in figure["data"]] == [[3], [2], [1]]
