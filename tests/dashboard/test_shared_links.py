"""Shared links: aggregate panels only through a valid token; 404 otherwise; rate limited; no
token in logs, in stored page views or in a Referer."""

from __future__ import annotations

import datetime as dt
import logging
import os
import urllib.error
import urllib.request
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dashboard import sharing
from dashboard.models import SharedLink
from reliability.processes import BIN, free_port, http_ok, start, stop, wait_until
from tests.conftest import DESKTOP_CHROME_UA
from tests.dashboard.conftest import HTMX, RANGE_QUERY, S1, XSS_PATH, at, body
from tests.tracker.test_tasks import worker_database_url
from tracker.event_rollups import events_aggregate
from tracker.models import Event, Visit

pytestmark = pytest.mark.django_db

SHARED_TARGETS = ["panels", "cards", "live", "visits", "over-time", "pages", "sources", "tech"]


def new_link(**fields) -> tuple[SharedLink, str]:
    owner = get_user_model().objects.get_or_create(username="owner", is_staff=True)[0]
    values = {"label": "", "expires_at": None, "allow_exports": False, **fields}
    return sharing.shared_link_create(user=owner, **values)


def shared_urls(token: str) -> list[tuple[str, dict]]:
    """Every URL a shared link opens: the page, each htmx panel, and stats.json."""
    base = f"/share/{token}/"
    return [
        (base, {}),
        (f"{base}?{RANGE_QUERY}", {}),
        (f"{base}?{RANGE_QUERY}&path=/pricing/", {}),
        *[(f"{base}?{RANGE_QUERY}", {**HTMX, "HX-Target": target}) for target in SHARED_TARGETS],
        (f"{base}api/stats.json?{RANGE_QUERY}", {}),
    ]


@pytest.fixture
def link_and_token(known_data):
    return new_link(label="board")


class SharedLinkAccessTests:
    def test_every_shared_url_with_valid_token(self, client, link_and_token):
        link, token = link_and_token
        for url, headers in shared_urls(token):
            response = client.get(url, headers=headers)
            assert response.status_code == 200, url
            assert response["X-Robots-Tag"] == "noindex"
            assert response["Referrer-Policy"] == "no-referrer"
            assert "no-store" in response["Cache-Control"]
        page = body(client.get(f"/share/{token}/?{RANGE_QUERY}"))
        assert '<meta name="robots" content="noindex">' in page
        for panel in ["cards", "live", "visits", "over-time", "pages", "sources", "tech"]:
            assert f'id="{panel}"' in page
        # Its own links stay under the shared address: ranges, filters and live polling.
        assert f'hx-get="/share/{token}/" hx-trigger="every 10s"' in page
        assert f'action="/share/{token}/"' in page
        assert "/dashboard/?" not in page and 'action="/dashboard/"' not in page
        link.refresh_from_db()
        assert link.last_used_at is not None

    def test_figures_match_the_staff_dashboard(self, client, staff_client, link_and_token):
        _, token = link_and_token
        shared = client.get(f"/share/{token}/api/stats.json?{RANGE_QUERY}").json()
        staff = staff_client.get(f"/dashboard/api/stats.json?{RANGE_QUERY}").json()
        assert shared == staff
        assert shared["visits"] == 7

    def test_no_visitor_level_data(self, client, link_and_token):
        _, token = link_and_token
        Event.objects.create(
            event_id=uuid.uuid4(),
            tracking_id=S1,
            occurred_at=at(10, 10, 1),
            name="signup",
            path="/",
        )
        events_aggregate()
        page = body(client.get(f"/share/{token}/?{RANGE_QUERY}"))
        assert 'id="sessions"' not in page and "sessions-table" not in page
        assert "/dashboard/sessions/" not in page and "Busiest visits" not in page
        assert str(S1) not in page and str(S1)[:8] not in page
        assert "export/" not in page
        # An event's props are not drilled into (the staff view reads them from raw events).
        assert "signup" in page and "events/props/" not in page
        # An htmx request for the visitors table gets the aggregate panels instead.
        headers = {**HTMX, "HX-Target": "sessions"}
        panel = body(client.get(f"/share/{token}/?{RANGE_QUERY}", headers=headers))
        assert 'id="sessions"' not in panel and str(S1) not in panel and 'id="cards"' in panel
        assert "&lt;img src=x onerror=alert(1)&gt;" in page and XSS_PATH not in page

    @pytest.mark.parametrize(
        "suffix",
        [
            f"sessions/{S1}/",
            "export/sessions.csv",
            "export/pages.csv",
            "settings/",
        ],
    )
    def test_timelines_and_exports_unreachable(self, client, link_and_token, suffix):
        _, token = link_and_token
        assert client.get(f"/share/{token}/{suffix}?{RANGE_QUERY}").status_code == 404

    def test_exports_when_the_link_allows_them(self, client, known_data):
        _, token = new_link(allow_exports=True)
        page = body(client.get(f"/share/{token}/?{RANGE_QUERY}"))
        query = RANGE_QUERY.replace("&", "&amp;")
        assert f'href="/share/{token}/export/pages.csv?{query}"' in page
        for name in ("sessions.csv", "pages.csv"):
            response = client.get(f"/share/{token}/export/{name}?{RANGE_QUERY}")
            assert response.status_code == 200
            assert response["Content-Type"].startswith("text/csv")
        assert client.get(f"/share/{token}/sessions/{S1}/").status_code == 404

    def test_bad_parameters_are_400(self, client, link_and_token):
        _, token = link_and_token
        assert client.get(f"/share/{token}/?range=1y").status_code == 400
        assert client.get(f"/share/{token}/api/stats.json?range=1y").status_code == 400

    def test_get_only(self, client, link_and_token):
        _, token = link_and_token
        assert client.post(f"/share/{token}/").status_code == 405


def wrong_tokens(token: str) -> list[str]:
    selector, verifier = token[:12], token[12:]
    flipped = ("A" if verifier[0] != "A" else "B") + verifier[1:]
    return [
        selector + flipped,  # the right selector, a wrong secret
        ("A" if selector[0] != "A" else "B") + selector[1:] + verifier,  # no such selector
        token[:-1],  # too short
        token + "A",  # too long
        "x",
    ]


class SharedLinkRefusedTests:
    def test_wrong_tokens_are_404(self, client, link_and_token):
        _, token = link_and_token
        for wrong in wrong_tokens(token):
            for url, headers in shared_urls(wrong):
                assert client.get(url, headers=headers).status_code == 404, url

    def test_expired_link_is_404(self, client, known_data):
        _, token = new_link(expires_at=timezone.now() + dt.timedelta(days=1))
        assert client.get(f"/share/{token}/").status_code == 200
        SharedLink.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
        for url, headers in shared_urls(token):
            assert client.get(url, headers=headers).status_code == 404, url

    def test_revoked_link_is_404(self, client, staff_client, known_data):
        link, token = new_link(allow_exports=True)
        assert client.get(f"/share/{token}/export/pages.csv").status_code == 200
        staff_client.post(f"/dashboard/settings/links/{link.pk}/revoke/")
        for url, headers in shared_urls(token):
            assert client.get(url, headers=headers).status_code == 404, url
        assert client.get(f"/share/{token}/export/pages.csv").status_code == 404

    def test_find_compares_the_secret(self, link_and_token):
        link, token = link_and_token
        now = timezone.now()
        assert sharing.shared_link_find(token=token, now=now) == link
        for wrong in wrong_tokens(token):
            assert sharing.shared_link_find(token=wrong, now=now) is None

    def test_tokens_are_random_and_long(self, db):
        tokens = {new_link()[1] for _ in range(20)}
        assert len(tokens) == 20
        # 43 URL-safe characters of verifier: 256 bits from secrets.token_urlsafe.
        assert all(len(token) == 55 for token in tokens)


class SharedLinkRateLimitTests:
    def test_limit_per_window(self, link_and_token, settings):
        settings.SHARED_LINK_REQUESTS_PER_MINUTE = 3
        link, _ = link_and_token
        now = timezone.now()
        assert [sharing.shared_link_allow_request(link=link, now=now) for _ in range(4)] == [
            True,
            True,
            True,
            False,
        ]
        later = now + dt.timedelta(seconds=sharing.RATE_WINDOW_SECONDS)
        assert sharing.shared_link_allow_request(link=link, now=later)
        other, _ = new_link()
        assert sharing.shared_link_allow_request(link=other, now=now)

    def test_too_many_requests_get_429(self, client, link_and_token, settings):
        settings.SHARED_LINK_REQUESTS_PER_MINUTE = 3
        _, token = link_and_token
        # Two windows admit at most 6: the 7th request is refused even across a window's edge.
        codes = [client.get(f"/share/{token}/", headers=HTMX).status_code for _ in range(7)]
        assert codes[0] == 200 and 429 in codes
        refused = client.get(f"/share/{token}/api/stats.json")
        if refused.status_code == 429:
            assert refused["Retry-After"] == "60"
            assert refused["X-Robots-Tag"] == "noindex"


class SharedLinkTokenPrivacyTests:
    def test_token_never_in_logs_or_stored_page_views(
        self, client, staff_client, known_data, caplog, settings, drain_visits
    ):
        settings.SHARED_LINK_REQUESTS_PER_MINUTE = 5
        for name in ("", "django.request", "django.server", "gunicorn.access"):
            caplog.set_level(logging.DEBUG, logger=name or None)
        response = staff_client.post("/dashboard/settings/links/", {"label": "log test"})
        token = body(response).split("/share/", 1)[1].split("/", 1)[0]
        _, expired_token = new_link(expires_at=timezone.now() - dt.timedelta(1))
        revoked, revoked_token = new_link()
        sharing.shared_link_revoke(link_id=revoked.pk, now=timezone.now())
        browser = {"User-Agent": DESKTOP_CHROME_UA}
        client.get("/about/", headers=browser)
        drain_visits()
        visits_before = Visit.objects.count()
        assert Visit.objects.filter(path="/about/").exists()  # a browser's page views are kept
        for each in (token, expired_token, revoked_token, *wrong_tokens(token)):
            for url, headers in shared_urls(each):
                client.get(url, headers={**browser, **headers})
        drain_visits()
        secrets_seen = [token, token[12:], expired_token[12:], revoked_token[12:]]
        logged = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
        assert "Not Found: /share/[token]/" in logged  # Django logged its 404s, redacted
        assert "Too Many Requests: /share/[token]/" in logged
        for secret in secrets_seen:
            assert secret not in logged
        assert Visit.objects.count() == visits_before
        assert not Visit.objects.filter(path__startswith="/share/").exists()


class SharedLinkAccessLogTests:
    @pytest.mark.slow
    @pytest.mark.django_db(transaction=True)
    def test_gunicorn_access_log_has_no_token(self, tmp_path):
        """gunicorn as `make run` starts it (access log on): its lines name /share/[token]."""
        _, token = new_link()
        env = {
            **os.environ,
            "DEBUG": "1",
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": worker_database_url(),
            "ALLOWED_HOSTS": "127.0.0.1",
        }
        port = free_port()
        log = tmp_path / "gunicorn.log"
        command = [
            str(BIN / "gunicorn"),
            "analytics_site.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--access-logfile",
            "-",
        ]
        server = start(command, env=env, log=log)
        statuses = []
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(
                lambda: http_ok(f"{base}/healthz") or server.poll() is not None,
                timeout=60,
                what="gunicorn",
            )
            for each in (token, wrong_tokens(token)[0]):
                try:
                    with urllib.request.urlopen(f"{base}/share/{each}/?range=7d") as response:
                        statuses.append(response.status)
                except urllib.error.HTTPError as error:
                    statuses.append(error.code)
        finally:
            stop(server)
        text = log.read_text()
        assert statuses == [200, 404]
        assert '"GET /share/[token]/?range=7d HTTP/1.1" 200' in text
        assert '"GET /share/[token]/?range=7d HTTP/1.1" 404' in text
        assert token[12:] not in text and wrong_tokens(token)[0][12:] not in text
