"""stats.json and the CSV exports against the known data set, aggregated for real."""

from __future__ import annotations

import csv
import io

import pytest

from tests.dashboard.conftest import (
    FORMULA_CAMPAIGN,
    RANGE_QUERY,
    S1,
    S2,
    S3,
    S4,
    S5,
    XSS_PATH,
    body,
)
from tracker.models import PageHourly, SessionHourly

pytestmark = pytest.mark.django_db


class StatsJsonTests:
    def test_figures_of_known_range(self, staff_client, known_data):
        stats = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}").json()

        assert stats["start"] == "2026-01-10T00:00:00+00:00"
        assert stats["end"] == "2026-01-13T00:00:00+00:00"
        assert stats["sessions"] == 5
        assert stats["pageviews"] == 12
        assert stats["pages_per_session"] == 2.4
        assert stats["bounce_rate"] == 0.4
        assert stats["avg_session_seconds"] == 324.0
        assert stats["live_sessions"] == 0
        assert stats["previous"]["sessions"] == 1
        assert stats["change"]["sessions"] == 4.0
        assert stats["top_pages"] == [
            {"path": "/", "pageviews": 5, "sessions": 4},
            {"path": "/pricing/", "pageviews": 3, "sessions": 2},
            {"path": "/signup/", "pageviews": 2, "sessions": 2},
            {"path": "/blog/", "pageviews": 1, "sessions": 1},
            {"path": XSS_PATH, "pageviews": 1, "sessions": 1},
        ]
        assert stats["pages_per_session_histogram"] == [
            {"bucket": "1", "sessions": 2},
            {"bucket": "2", "sessions": 1},
            {"bucket": "3", "sessions": 1},
            {"bucket": "4-5", "sessions": 1},
            {"bucket": "6-10", "sessions": 0},
            {"bucket": "11-20", "sessions": 0},
            {"bucket": "21+", "sessions": 0},
        ]
        assert stats["timeseries"] == [
            # Pageviews follow their session's start: S3's visit after midnight counts on the 10th.
            {"t": "2026-01-10T00:00:00+00:00", "pageviews": 6, "sessions": 3},
            {"t": "2026-01-11T00:00:00+00:00", "pageviews": 1, "sessions": 1},
            {"t": "2026-01-12T00:00:00+00:00", "pageviews": 5, "sessions": 1},
        ]

    def test_figures_equal_the_rollups(self, staff_client, known_data):
        """Whatever aggregation stores is what the dashboard reports, summed over the range."""
        stats = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}").json()
        in_range = {"hour__gte": "2026-01-10T00:00Z", "hour__lt": "2026-01-13T00:00Z"}
        totals = SessionHourly.objects.filter(dimension="all", **in_range)
        assert stats["sessions"] == sum(row.sessions for row in totals)
        assert stats["bounce_rate"] == round(
            sum(row.bounces for row in totals) / stats["sessions"], 4
        )
        assert stats["pageviews"] == sum(row.pageviews for row in totals)
        # No session of this data set straddles the range's edges: visit time agrees.
        pages = PageHourly.objects.filter(**in_range)
        assert stats["pageviews"] == sum(row.pageviews for row in pages)
        assert sum(point["pageviews"] for point in stats["timeseries"]) == stats["pageviews"]
        assert sum(point["sessions"] for point in stats["timeseries"]) == stats["sessions"]
        histogram = stats["pages_per_session_histogram"]
        assert sum(row["sessions"] for row in histogram) == stats["sessions"]

    def test_hourly_series_for_one_day(self, staff_client, known_data):
        stats = staff_client.get("/dashboard/api/stats.json?start=2026-01-10&end=2026-01-10").json()
        assert len(stats["timeseries"]) == 24
        ten = stats["timeseries"][10]
        assert ten == {"t": "2026-01-10T10:00:00+00:00", "pageviews": 3, "sessions": 1}
        assert stats["sessions"] == 3

    def test_path_filter(self, staff_client, known_data):
        stats = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}&path=/").json()
        assert stats["path"] == "/"
        assert stats["pageviews"] == 5  # views of "/"
        assert stats["sessions"] == 2  # S1 and S2 entered on "/"
        assert stats["bounce_rate"] == 0.5
        assert stats["top_pages"] == [{"path": "/", "pageviews": 5, "sessions": 4}]

    def test_empty_range(self, staff_client, db):
        stats = staff_client.get("/dashboard/api/stats.json?range=30d").json()
        assert stats["sessions"] == 0 and stats["pageviews"] == 0
        assert stats["pages_per_session"] is None and stats["bounce_rate"] is None
        assert len(stats["timeseries"]) == 30
        assert stats["top_pages"] == []


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body(response))))


class CsvExportTests:
    def test_sessions_csv(self, staff_client, known_data):
        response = staff_client.get(f"/dashboard/export/sessions.csv?{RANGE_QUERY}")
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert 'filename="sessions-2026-01-10-2026-01-12.csv"' in response["Content-Disposition"]
        header, *rows = rows_of(response)
        assert header == [
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
        assert [row[0] for row in rows] == [str(s) for s in (S1, S2, S3, S4, S5)]
        assert rows[0] == [
            str(S1),
            "2026-01-10T10:00:00+00:00",
            "2026-01-10T10:02:00+00:00",
            "120",
            "3",
            "0",
            "/",
            "/signup/",
            "news.example",
            "newsletter",
            "email",
            "winter",
            "Chrome",
            "Linux",
            "desktop",
            "0",
        ]
        assert rows[2][3:8] == ["900", "2", "0", "/blog/", "/"]
        # A formula planted in a campaign name stays text in a spreadsheet.
        assert rows[3][11] == "'" + FORMULA_CAMPAIGN
        assert rows[3][6] == XSS_PATH

    def test_sessions_csv_never_has_session_keys(self, staff_client, known_data):
        from django.contrib.sessions.models import Session

        text = body(staff_client.get(f"/dashboard/export/sessions.csv?{RANGE_QUERY}"))
        for key in Session.objects.values_list("session_key", flat=True):
            assert key not in text

    def test_pages_csv(self, staff_client, known_data):
        response = staff_client.get(f"/dashboard/export/pages.csv?{RANGE_QUERY}")
        assert 'filename="pages-2026-01-10-2026-01-12.csv"' in response["Content-Disposition"]
        assert rows_of(response) == [
            ["path", "pageviews", "sessions"],
            ["/", "5", "4"],
            ["/pricing/", "3", "2"],
            ["/signup/", "2", "2"],
            ["/blog/", "1", "1"],
            [XSS_PATH, "1", "1"],
        ]

    def test_pages_csv_with_path_filter(self, staff_client, known_data):
        response = staff_client.get(f"/dashboard/export/pages.csv?{RANGE_QUERY}&path=/signup/")
        assert rows_of(response) == [["path", "pageviews", "sessions"], ["/signup/", "2", "2"]]
