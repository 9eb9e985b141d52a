from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from tests.dashboard.conftest import HTMX, RANGE_QUERY, S0, S1, S5, S6, XSS_PATH, body

pytestmark = pytest.mark.django_db

DASHBOARD_URLS = [
    "/dashboard/",
    f"/dashboard/?{RANGE_QUERY}",
    f"/dashboard/sessions/{S1}/",
    "/dashboard/export/sessions.csv",
    "/dashboard/export/pages.csv",
    "/dashboard/api/stats.json",
]
PARTIAL_TARGETS = [
    "panels", "cards", "live", "visits", "over-time", "pages", "sources", "tech", "countries",
    "events",
]  # fmt: skip


class AccessTests:
    @pytest.mark.parametrize("url", DASHBOARD_URLS)
    def test_anonymous_redirected_to_login(self, client, known_data, url):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={quote(url, safe='/')}"

    @pytest.mark.parametrize("url", DASHBOARD_URLS)
    def test_anonymous_htmx_gets_client_redirect(self, client, known_data, url):
        response = client.get(url, headers={**HTMX, "HX-Target": "live"})
        assert response.status_code == 200
        assert response["HX-Redirect"].startswith("/accounts/login/?next=")
        assert "Live" not in body(response)

    @pytest.mark.parametrize("url", DASHBOARD_URLS)
    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_non_staff_forbidden(self, member_client, known_data, url, headers):
        assert member_client.get(url, headers=headers).status_code == 403

    @pytest.mark.parametrize("url", DASHBOARD_URLS)
    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_staff_ok(self, staff_client, known_data, url, headers):
        assert staff_client.get(url, headers=headers).status_code == 200

    def test_post_not_allowed(self, staff_client):
        assert staff_client.post("/dashboard/").status_code == 405


class PageAndPartialTests:
    def test_full_page_has_navigation_panels_and_scripts(self, staff_client, known_data):
        text = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}"))
        assert "<html" in text
        for href in ('href="/"', 'href="/about/"', 'href="/dashboard/"'):
            assert href in text
        for panel in ["panels", "cards", "live", "visits", "over-time", "pages", "sources"]:
            assert f'id="{panel}"' in text
        assert 'id="tech"' in text and 'id="sessions"' in text
        assert "plotly/plotly.min.js" in text
        assert 'hx-push-url="true"' in text
        assert 'hx-trigger="every 10s"' in text

    @pytest.mark.parametrize("target", [*PARTIAL_TARGETS, "sessions"])
    def test_htmx_renders_only_the_targeted_partial(self, staff_client, known_data, target):
        response = staff_client.get(
            f"/dashboard/?{RANGE_QUERY}", headers={**HTMX, "HX-Target": target}
        )
        text = body(response)
        assert response.status_code == 200
        assert "<html" not in text
        assert text.lstrip().startswith("<") and f'id="{target}"' in text
        assert "HX-Request" in response["Vary"]

    def test_htmx_without_known_target_renders_all_panels(self, staff_client, known_data):
        text = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}", headers=HTMX))
        assert "<html" not in text
        assert 'id="panels"' in text and 'id="sessions"' in text

    def test_history_restore_renders_full_page(self, staff_client, known_data):
        headers = {**HTMX, "HX-History-Restore-Request": "true", "HX-Target": "panels"}
        assert "<html" in body(staff_client.get("/dashboard/", headers=headers))

    def test_headline_figures_for_known_range(self, staff_client, known_data):
        text = body(
            staff_client.get(f"/dashboard/?{RANGE_QUERY}", headers={**HTMX, "HX-Target": "cards"})
        )
        assert 'data-figure-name="visitors">6<' in text
        assert 'data-figure-name="visits">7<' in text  # S6 came twice
        assert 'data-figure-name="pageviews">16<' in text
        assert 'data-figure-name="views_per_visit">2.3<' in text  # 16 / 7
        assert 'data-figure-name="bounce_rate">29%<' in text  # 2 of 7
        assert 'data-figure-name="avg_visit_seconds">4m 43s<' in text  # 1980 s / 7
        assert '1 of 7 visits">14%<' in text  # returning: S6's second visit
        assert "+500%" in text  # visitors: 6 against 1 in the three days before
        assert "+600%" in text  # visits: 7 against 1
        assert text.count('class="figure"') == 8

    def test_live_partial_counts_recent_visitors(self, staff_client, db):
        from django.utils import timezone

        from tests.dashboard.conftest import visit
        from tracker.models import Visit

        now = timezone.now()
        Visit.objects.bulk_create(
            [visit(S1, now - timezone.timedelta(minutes=1), "/"), visit(S1, now, "/about/")]
        )
        text = body(staff_client.get("/dashboard/", headers={**HTMX, "HX-Target": "live"}))
        assert 'data-figure-name="live_sessions">1<' in text

    def test_visitors_table_lists_visitors_first_seen_in_range(self, staff_client, known_data):
        text = body(
            staff_client.get(
                f"/dashboard/?{RANGE_QUERY}", headers={**HTMX, "HX-Target": "sessions"}
            )
        )
        assert "6 first seen in this range" in text
        assert "1\N{EN DASH}6 · page 1 of 1" in text
        assert f"/dashboard/sessions/{S1}/" in text and f"/dashboard/sessions/{S6}/" in text
        assert f"/dashboard/sessions/{S0}/" not in text  # first seen before the range
        rows = text.split("<tbody>")[1].split("</tr>")
        # Newest first: S5 (12th), then S6 with its two visits, four pages and first source.
        assert str(S5)[-8:] in rows[0] and str(S6)[-8:] in rows[1]
        assert '<td class="num">2</td>' in rows[1] and '<td class="num">4</td>' in rows[1]
        assert "search.example" in rows[1]
        assert "news.example · newsletter / email / winter" in text  # S1's first source

    def test_visitors_table_pages(self, staff_client, known_data, monkeypatch):
        from dashboard import panels

        monkeypatch.setattr(panels, "SESSIONS_PER_PAGE", 4)
        first = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}"))
        assert "1\N{EN DASH}4 · page 1 of 2" in first
        second = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}&page=2"))
        assert "5\N{EN DASH}6 · page 2 of 2" in second
        assert f"/dashboard/sessions/{S1}/" in second

    def test_page_beyond_the_last_shows_the_last(self, staff_client, known_data):
        text = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}&page=99"))
        assert "page 1 of 1" in text

    def test_path_filter_narrows_page_figures(self, staff_client, known_data):
        url = f"/dashboard/?{RANGE_QUERY}&path=/pricing/"
        text = body(staff_client.get(url, headers={**HTMX, "HX-Target": "cards"}))
        assert 'data-figure-name="pageviews">5<' in text  # views of /pricing/
        assert 'data-figure-name="visits">2<' in text  # S5's visit and S6's second entered there
        assert 'data-figure-name="visitors">2<' in text
        assert "Visitors entering here" in text

    def test_visits_panel_has_both_histograms_and_busiest_visits(self, staff_client, known_data):
        text = body(
            staff_client.get(f"/dashboard/?{RANGE_QUERY}", headers={**HTMX, "HX-Target": "visits"})
        )
        for title in ("Visits per session", "Pages per visit", "Busiest visits"):
            assert title in text
        for figure in ("fig-visitors-histogram", "fig-histogram", "fig-busiest"):
            assert f'id="{figure}"' in text
        # Visitors by visits made: five came once, S6 twice.
        assert '<tr><td>1</td><td class="num">5</td></tr>' in text
        assert '<tr><td>2</td><td class="num">1</td></tr>' in text
        assert "#2" in text  # S6's second visit among the busiest

    def test_breakdowns_show_visits_and_bounce_rate(self, staff_client, known_data):
        text = body(
            staff_client.get(f"/dashboard/?{RANGE_QUERY}", headers={**HTMX, "HX-Target": "sources"})
        )
        # Referrers: direct (S2, S5, S6's second visit; S4's is hostile), search.example twice.
        # Each row's value is a link that adds its filter.
        row = text.split("search.example</a></td>")[1].split("</tr>")[0]
        assert '<td class="num">2</td><td class="num">0%</td>' in row
        direct = text.split("(direct)</a></td>")[1].split("</tr>")[0]
        assert '<td class="num">3</td><td class="num">33%</td>' in direct


    def test_countries_panel_shows_flag_name_visitors_visits_bounce(self, staff_client, known_data):
        text = body(
            staff_client.get(
                f"/dashboard/?{RANGE_QUERY}", headers={**HTMX, "HX-Target": "countries"}
            )
        )
        rows = [row.split("</tr>")[0] for row in text.split("<tr ")[1:]]
        cells = [re.findall(r"<td[^>]*>(?:<a [^>]*>)?(.*?)(?:</a>)?</td>", row) for row in rows]
        assert cells == [
            ["(unknown)", "2", "2", "100%"],
            ["\U0001f1e9\U0001f1ea Germany", "1", "2", "0%"],
            ["\U0001f1ec\U0001f1e7 United Kingdom", "2", "2", "0%"],
            ["\U0001f1fa\U0001f1f8 United States of America", "1", "1", "0%"],
        ]


class SessionTimelineTests:
    def test_timeline_full_page_lists_pages_in_order(self, staff_client, known_data):
        text = body(staff_client.get(f"/dashboard/sessions/{S1}/"))
        assert "<html" in text
        steps = text[text.index('<ol class="steps">') :]
        assert steps.index("/pricing/") < steps.index("/signup/")
        assert "30s" in text and "1m 30s" in text and "last page" in text
        assert "Visit 1" in text and "Visit 2" not in text
        assert "news.example · newsletter / email / winter" in text

    def test_timeline_groups_page_views_by_visit(self, staff_client, known_data):
        text = body(staff_client.get(f"/dashboard/sessions/{S6}/"))
        first, second = text.split('<section class="visit"')[1:]
        assert "Visit 1" in first and "Visit 2" in second
        assert "search.example" in first and "(direct)" in second
        assert "5m 00s" in first and "1m 00s" in second  # each visit's duration
        assert first.count("<li>") == 2 and second.count("<li>") == 2
        assert "/docs/" in first and "/signup/" in second
        # The gap between the visits is no time on a page: each visit ends on its last page.
        assert first.count("last page") == 1 and "55m" not in text

    def test_page_views_not_aggregated_yet_are_the_last_group(self, staff_client, known_data):
        from tests.dashboard.conftest import at, visit
        from tracker.models import Visit

        Visit.objects.bulk_create([visit(S6, at(11, 18), "/late/")])
        text = body(staff_client.get(f"/dashboard/sessions/{S6}/"))
        groups = text.split('<section class="visit"')[1:]
        assert len(groups) == 3
        assert "not aggregated yet" in groups[-1].lower() and "/late/" in groups[-1]

    def test_timeline_htmx_is_the_partial(self, staff_client, known_data):
        response = staff_client.get(
            f"/dashboard/sessions/{S1}/", headers={**HTMX, "HX-Target": "timeline"}
        )
        text = body(response)
        assert "<html" not in text and "/signup/" in text

    def test_unknown_session_404(self, staff_client, db):
        assert staff_client.get(f"/dashboard/sessions/{S1}/").status_code == 404

    def test_non_uuid_session_404(self, staff_client, db):
        assert staff_client.get("/dashboard/sessions/not-a-uuid/").status_code == 404

    def test_pruned_session_shows_summary_and_says_so(self, staff_client, known_data):
        from tracker.models import Visit

        Visit.objects.filter(tracking_id=S1).delete()
        text = body(staff_client.get(f"/dashboard/sessions/{S1}/"))
        assert "pruned" in text
        assert "2m 00s" in text  # the visit summary's duration is kept
        assert "Visit 1" in text and '<ol class="steps">' not in text


class BadParameterTests:
    @pytest.mark.parametrize(
        "query",
        [
            "range=1y",
            "range=%00",
            "start=2026-01-10",
            "end=2026-01-10",
            "start=2026-01-12&end=2026-01-10",
            "start=2026-13-01&end=2026-13-02",
            "start=10/01/2026&end=12/01/2026",
            "start=2000-01-01&end=2026-01-01",
            "start=0001-01-01&end=0001-01-02",
            "range=7d&start=2026-01-10&end=2026-01-12",
            "page=0",
            "page=-1",
            "page=%2Fa%0Ab",  # not a number: the "page visited" filter, with a control char
            "page=99999999999999999999",
            "path=" + "a" * 501,
            "path=%2Fa%0Ab",
        ],
    )
    @pytest.mark.parametrize(
        "url",
        [
            "/dashboard/",
            f"/dashboard/sessions/{S1}/",
            "/dashboard/export/sessions.csv",
            "/dashboard/export/pages.csv",
            "/dashboard/api/stats.json",
        ],
    )
    def test_bad_parameters_get_400_with_message(self, staff_client, url, query):
        response = staff_client.get(f"{url}?{query}")
        assert response.status_code == 400
        assert any(word in body(response) for word in ("range", "start", "end", "page", "path"))

    def test_htmx_bad_parameter_is_plain_text(self, staff_client, db):
        response = staff_client.get(
            "/dashboard/?range=nope", headers={**HTMX, "HX-Target": "panels"}
        )
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/plain")
        assert "range: Select a valid choice" in body(response)

    def test_stats_json_bad_parameter_is_json(self, staff_client, db):
        response = staff_client.get("/dashboard/api/stats.json?start=2026-02-01&end=2026-01-01")
        assert response.status_code == 400
        assert "end= must be on or after start=" in response.json()["error"]

    def test_unknown_parameters_are_ignored(self, staff_client, db):
        assert staff_client.get("/dashboard/?utm_source=x&foo=bar").status_code == 200


class EscapingTests:
    def test_attacker_strings_are_escaped_everywhere(self, staff_client, known_data):
        text = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}"))
        assert XSS_PATH not in text
        assert "<b>evil</b>" not in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text
        assert "&lt;b&gt;evil&lt;/b&gt;.example" in text

    def test_chart_json_cannot_close_the_script(self, staff_client, known_data):
        text = body(staff_client.get(f"/dashboard/?{RANGE_QUERY}"))
        scripts = text.split('type="application/json">')[1:]
        assert scripts
        for script in scripts:
            assert "<" not in script.split("</script>")[0]

    def test_timeline_escapes_paths(self, staff_client, known_data):
        from tests.dashboard.conftest import S4

        text = body(staff_client.get(f"/dashboard/sessions/{S4}/"))
        assert XSS_PATH not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


class QueryCountTests:
    """Panels read rollups with a fixed number of queries, whatever the data (no N+1).

    Two of them are the login's session and user; one reads the aggregation stamp; one ranks
    the visit dimensions of every panel that shows some; the events panel reads one (a second
    for its visitors when there are events); the visitors table one more for its rows' events;
    the time series reads the previous period's too, for the comparison; the headline and the
    visits panel read the range's repeat visits once between them. The goals and funnels
    panels load by themselves after the page: goals read the goals' definitions for their cache
    key and, cold, the goals (with goals: one more for their hits and two for the range's
    visitors); funnels read the funnels (with none, nothing more).
    """

    @pytest.mark.parametrize(
        ("target", "cold", "warm"),
        [
            (None, 21, 7),
            ("panels", 21, 7),
            ("cards", 7, 4),
            ("live", 3, 3),
            ("visits", 6, 3),
            ("over-time", 7, 3),
            ("pages", 6, 3),
            ("sources", 4, 3),
            ("tech", 4, 3),
            ("countries", 5, 3),
            ("sessions", 5, 5),
            ("events", 4, 3),
            ("goals", 5, 4),
            ("funnels", 3, 3),
        ],
    )
    def test_query_counts(
        self, staff_client, known_data, django_assert_num_queries, target, cold, warm
    ):
        headers = {**HTMX, "HX-Target": target} if target else {}
        url = f"/dashboard/?{RANGE_QUERY}"
        with django_assert_num_queries(cold):
            assert staff_client.get(url, headers=headers).status_code == 200
        with django_assert_num_queries(warm):
            assert staff_client.get(url, headers=headers).status_code == 200

    def test_exports_and_timeline_query_counts(
        self, staff_client, known_data, django_assert_num_queries
    ):
        for url, queries in [
            (f"/dashboard/api/stats.json?{RANGE_QUERY}", 18),
            # Cached figures; fresh "live" and funnels (none here: one query).
            (f"/dashboard/api/stats.json?{RANGE_QUERY}", 6),
            (f"/dashboard/export/pages.csv?{RANGE_QUERY}", 4),
            (f"/dashboard/export/sessions.csv?{RANGE_QUERY}", 3),
            (f"/dashboard/export/events.csv?{RANGE_QUERY}", 3),
            (f"/dashboard/sessions/{S1}/", 7),
        ]:
            with django_assert_num_queries(queries):
                body(staff_client.get(url))


class CacheTests:
    def test_new_aggregation_shows_at_once(self, staff_client, known_data):
        from tests.dashboard.conftest import at, session_id, visit
        from tracker.models import Visit
        from tracker.rollups import visits_aggregate

        url = f"/dashboard/?{RANGE_QUERY}"
        cards = {**HTMX, "HX-Target": "cards"}
        assert 'data-figure-name="visitors">6<' in body(staff_client.get(url, headers=cards))
        assert staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}").json()["visitors"] == 6
        Visit.objects.bulk_create([visit(session_id(50), at(12, 20), "/late/")])
        # Not aggregated yet: the rollups, and so the cached panels, are unchanged.
        assert 'data-figure-name="visitors">6<' in body(staff_client.get(url, headers=cards))
        visits_aggregate()
        assert 'data-figure-name="visitors">7<' in body(staff_client.get(url, headers=cards))
        assert "/late/" in body(staff_client.get(url, headers={**HTMX, "HX-Target": "pages"}))
        stats = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}").json()
        assert stats["visitors"] == stats["sessions"] == 7
