"""stats.json and the CSV exports against the known data set, aggregated for real."""

from __future__ import annotations

import csv
import datetime as dt
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
    S6,
    XSS_PATH,
    at,
    body,
    visit,
)
from tracker.models import Visit
from tracker.rollups import visits_aggregate

pytestmark = pytest.mark.django_db


class StatsJsonTests:
    def test_figures_of_known_range(self, staff_client, known_data):
        stats = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}").json()

        assert stats["start"] == "2026-01-10T00:00:00+00:00"
        assert stats["end"] == "2026-01-13T00:00:00+00:00"
        assert stats["visitors"] == stats["sessions"] == 6
        assert stats["visits"] == 7
        assert stats["pageviews"] == 16
        assert stats["views_per_visit"] == 2.29
        assert stats["bounce_rate"] == 0.2857
        assert stats["avg_visit_seconds"] == 282.9
        assert stats["returning_visits"] == 1
        assert stats["returning_share"] == 0.1429
        assert stats["live_sessions"] == 0
        assert stats["previous"]["visitors"] == stats["previous"]["visits"] == 1
        assert stats["change"]["visitors"] == 5.0
        assert stats["change"]["visits"] == 6.0
        assert stats["top_pages"] == [
            {"path": "/", "pageviews": 5, "visitors": 4},
            {"path": "/pricing/", "pageviews": 5, "visitors": 3},
            {"path": "/signup/", "pageviews": 3, "visitors": 3},
            {"path": "/blog/", "pageviews": 1, "visitors": 1},
            {"path": "/docs/", "pageviews": 1, "visitors": 1},
            {"path": XSS_PATH, "pageviews": 1, "visitors": 1},
        ]
        assert stats["visits_per_visitor_histogram"] == [
            {"bucket": "1", "visitors": 5},
            {"bucket": "2", "visitors": 1},
            {"bucket": "3", "visitors": 0},
            {"bucket": "4-5", "visitors": 0},
            {"bucket": "6-10", "visitors": 0},
            {"bucket": "11+", "visitors": 0},
        ]
        assert stats["pages_per_visit_histogram"] == [
            {"bucket": "1", "visits": 2},
            {"bucket": "2", "visits": 3},
            {"bucket": "3", "visits": 1},
            {"bucket": "4-5", "visits": 1},
            {"bucket": "6-10", "visits": 0},
            {"bucket": "11-20", "visits": 0},
            {"bucket": "21+", "visits": 0},
        ]
        # S6's two visits came from Germany; S2's and S4's from addresses of no known country.
        assert stats["countries"] == [
            {"country": "", "visitors": 2, "visits": 2, "pageviews": 2, "bounce_rate": 1.0},
            {"country": "DE", "visitors": 1, "visits": 2, "pageviews": 4, "bounce_rate": 0.0},
            {"country": "GB", "visitors": 2, "visits": 2, "pageviews": 8, "bounce_rate": 0.0},
            {"country": "US", "visitors": 1, "visits": 1, "pageviews": 2, "bounce_rate": 0.0},
        ]
        assert stats["timeseries"] == [
            # Pageviews follow their visit's start: S3's page after midnight counts on the 10th.
            {"t": "2026-01-10T00:00:00+00:00", "pageviews": 6, "visits": 3, "visitors": 3},
            {"t": "2026-01-11T00:00:00+00:00", "pageviews": 5, "visits": 3, "visitors": 2},
            {"t": "2026-01-12T00:00:00+00:00", "pageviews": 5, "visits": 1, "visitors": 1},
        ]

    def test_hourly_series_for_one_day(self, staff_client, known_data):
        stats = staff_client.get("/dashboard/api/stats.json?start=2026-01-10&end=2026-01-10").json()
        assert len(stats["timeseries"]) == 24
        ten = stats["timeseries"][10]
        assert ten == {"t": "2026-01-10T10:00:00+00:00", "pageviews": 3, "visits": 1, "visitors": 1}
        assert stats["visitors"] == stats["visits"] == 3

    def test_path_filter(self, staff_client, known_data):
        stats = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}&path=/").json()
        assert stats["path"] == "/"
        assert stats["pageviews"] == 5  # views of "/"
        assert stats["visits"] == stats["visitors"] == 2  # S1 and S2 entered on "/"
        assert stats["bounce_rate"] == 0.5
        assert stats["top_pages"] == [{"path": "/", "pageviews": 5, "visitors": 4}]

    def test_empty_range(self, staff_client, db):
        stats = staff_client.get("/dashboard/api/stats.json?range=30d").json()
        assert stats["visitors"] == stats["visits"] == stats["pageviews"] == 0
        assert stats["views_per_visit"] is None and stats["bounce_rate"] is None
        assert stats["returning_share"] is None
        assert len(stats["timeseries"]) == 30
        assert stats["top_pages"] == []
        assert all(row["visitors"] == 0 for row in stats["visits_per_visitor_histogram"])


class VisitTimeoutTests:
    """One visitor's two page views: a new visit only after more than the timeout between them."""

    @pytest.mark.parametrize(
        ("gap", "visits"),
        [
            (dt.timedelta(minutes=29), 1),
            (dt.timedelta(minutes=30), 1),  # exactly the timeout: still the same visit
            (dt.timedelta(minutes=30, seconds=1), 2),
            (dt.timedelta(hours=5), 2),
        ],
    )
    def test_visitor_with_a_gap(self, staff_client, db, gap, visits):
        first = at(11, 12)
        Visit.objects.bulk_create([visit(S1, first, "/"), visit(S1, first + gap, "/pricing/")])
        visits_aggregate()
        stats = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}").json()
        assert stats["visitors"] == 1
        assert stats["visits"] == visits
        assert stats["pageviews"] == 2
        assert stats["returning_visits"] == visits - 1
        assert stats["bounce_rate"] == (1.0 if visits == 2 else 0.0)
        histogram = {
            row["bucket"]: row["visitors"] for row in stats["visits_per_visitor_histogram"]
        }
        assert histogram[str(visits)] == 1

    def test_a_new_source_starts_a_new_visit(self, staff_client, db):
        first = at(11, 12)
        Visit.objects.bulk_create(
            [
                visit(S1, first, "/"),
                visit(S1, first + dt.timedelta(minutes=1), "/", referrer_host="news.example"),
            ]
        )
        visits_aggregate()
        stats = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}").json()
        assert (stats["visitors"], stats["visits"]) == (1, 2)


def rows_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body(response))))


class CsvExportTests:
    def test_sessions_csv_has_one_row_per_visit(self, staff_client, known_data):
        response = staff_client.get(f"/dashboard/export/sessions.csv?{RANGE_QUERY}")
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert 'filename="sessions-2026-01-10-2026-01-12.csv"' in response["Content-Disposition"]
        header, *rows = rows_of(response)
        assert header == [
            "tracking_id",
            "number",
            "started_at",
            "ended_at",
            "pageviews",
            "duration_seconds",
            "entry_path",
            "exit_path",
            "referrer_host",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "browser",
            "os",
            "device",
            "country",
        ]
        # Oldest first; S0's visit lies before the range.
        assert [(row[0], row[1]) for row in rows] == [
            (str(S1), "1"),
            (str(S2), "1"),
            (str(S3), "1"),
            (str(S4), "1"),
            (str(S6), "1"),
            (str(S6), "2"),
            (str(S5), "1"),
        ]
        assert rows[0] == [
            str(S1),
            "1",
            "2026-01-10T10:00:00+00:00",
            "2026-01-10T10:02:00+00:00",
            "3",
            "120",
            "/",
            "/signup/",
            "news.example",
            "newsletter",
            "email",
            "winter",
            "Chrome",
            "Linux",
            "desktop",
            "GB",
        ]
        assert rows[2][2:8] == [
            "2026-01-10T23:50:00+00:00",
            "2026-01-11T00:05:00+00:00",
            "2",
            "900",
            "/blog/",
            "/",
        ]
        # S6's two visits, each with its own start, pages and source.
        assert rows[4][2:9] == [
            "2026-01-11T14:00:00+00:00",
            "2026-01-11T14:05:00+00:00",
            "2",
            "300",
            "/docs/",
            "/pricing/",
            "search.example",
        ]
        assert rows[5][2:9] == [
            "2026-01-11T15:00:00+00:00",
            "2026-01-11T15:01:00+00:00",
            "2",
            "60",
            "/pricing/",
            "/signup/",
            "",
        ]
        # A formula planted in a campaign name stays text in a spreadsheet.
        assert rows[3][11] == "'" + FORMULA_CAMPAIGN
        assert rows[3][6] == XSS_PATH

    def test_sessions_csv_with_path_filter(self, staff_client, known_data):
        response = staff_client.get(f"/dashboard/export/sessions.csv?{RANGE_QUERY}&path=/pricing/")
        _, *rows = rows_of(response)
        assert [(row[0], row[1], row[6]) for row in rows] == [
            (str(S6), "2", "/pricing/"),
            (str(S5), "1", "/pricing/"),
        ]

    def test_sessions_csv_never_has_session_keys(self, staff_client, known_data):
        from django.contrib.sessions.models import Session

        text = body(staff_client.get(f"/dashboard/export/sessions.csv?{RANGE_QUERY}"))
        for key in Session.objects.values_list("session_key", flat=True):
            assert key not in text

    def test_pages_csv(self, staff_client, known_data):
        response = staff_client.get(f"/dashboard/export/pages.csv?{RANGE_QUERY}")
        assert 'filename="pages-2026-01-10-2026-01-12.csv"' in response["Content-Disposition"]
        assert rows_of(response) == [
            ["path", "pageviews", "visitors"],
            ["/", "5", "4"],
            ["/pricing/", "5", "3"],
            ["/signup/", "3", "3"],
            ["/blog/", "1", "1"],
            ["/docs/", "1", "1"],
            [XSS_PATH, "1", "1"],
        ]

    def test_pages_csv_with_path_filter(self, staff_client, known_data):
        response = staff_client.get(f"/dashboard/export/pages.csv?{RANGE_QUERY}&path=/signup/")
        assert rows_of(response) == [["path", "pageviews", "visitors"], ["/signup/", "3", "3"]]
