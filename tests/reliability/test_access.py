"""No one let in: every dashboard URL, found by walking the URL patterns, is staff-only."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

SAMPLE_ARGUMENTS = {"uuid": str(uuid.uuid4()), "int": "1", "str": "x", "slug": "x", "path": "x"}


def dashboard_urls(prefix: str = "/dashboard/") -> list[str]:
    """Every URL pattern under ``prefix``, with sample values for its converters."""
    urls = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                urls.append("/" + route)

    walk(get_resolver().url_patterns, "")
    filled = []
    for url in (u for u in urls if u.startswith(prefix)):
        for converter, value in SAMPLE_ARGUMENTS.items():
            while f"<{converter}:" in url:
                start = url.index(f"<{converter}:")
                url = url[:start] + value + url[url.index(">", start) + 1 :]
        filled.append(url)
    return filled


DASHBOARD_URLS = dashboard_urls()
# Shared links open a few dashboard URLs to anyone with a valid token; "x" is not one.
SHARE_URLS = dashboard_urls("/share/")


class DashboardAccessTests:
    def test_enumeration_found_the_public_urls(self):
        for expected in [
            "/dashboard/",
            "/dashboard/api/stats.json",
            "/dashboard/export/sessions.csv",
            "/dashboard/export/pages.csv",
        ]:
            assert expected in DASHBOARD_URLS
        assert any(url.startswith("/dashboard/sessions/") for url in DASHBOARD_URLS)

    @pytest.mark.parametrize("url", DASHBOARD_URLS)
    @pytest.mark.parametrize("htmx", [False, True])
    def test_anonymous_is_redirected_to_login(self, client, url, htmx):
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        response = client.get(url, **headers)
        if htmx:
            # htmx is told to load the login page as a whole page, not swap it into a panel.
            assert response["HX-Redirect"].startswith("/accounts/login/?next=")
        else:
            assert response.status_code == 302
            assert response["Location"].startswith("/accounts/login/?next=")

    @pytest.mark.parametrize("url", DASHBOARD_URLS)
    @pytest.mark.parametrize("htmx", [False, True])
    def test_non_staff_is_forbidden(self, client, url, htmx):
        client.force_login(get_user_model().objects.create_user("visitor"))
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        assert client.get(url, **headers).status_code == 403

    @pytest.mark.parametrize("url", [*DASHBOARD_URLS, "/accounts/logout/"])
    def test_htmx_post_without_csrf_token_is_forbidden(self, url):
        client = Client(enforce_csrf_checks=True)
        client.force_login(get_user_model().objects.create_user("staff", is_staff=True))
        response = client.post(url, HTTP_HX_REQUEST="true")
        assert response.status_code == 403
        # Still logged in: the forged logout did nothing.
        assert client.get("/dashboard/").status_code == 200

    @pytest.mark.parametrize("url", SHARE_URLS)
    @pytest.mark.parametrize("htmx", [False, True])
    def test_shared_urls_without_a_valid_token_are_404(self, client, url, htmx):
        assert "/share/x/" in url
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        assert client.get(url, **headers).status_code == 404
