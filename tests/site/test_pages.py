from __future__ import annotations

import logging

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

SESSION_ENGINES = ["db", "cache", "cached_db", "file", "signed_cookies"]


def visit_count(response) -> int:
    text = response.content.decode()
    marker = "Visit count: "
    start = text.index(marker) + len(marker)
    return int(text[start : text.index("<", start)])


class CounterTests:
    def test_counter_increments_per_session(self, client):
        counts = [visit_count(client.get("/")) for _ in range(3)]
        assert counts == [1, 2, 3]

    def test_counter_two_clients_are_independent(self):
        first, second = Client(), Client()
        first.get("/")
        first.get("/")
        assert visit_count(first.get("/")) == 3
        assert visit_count(second.get("/")) == 1

    def test_counter_body_and_navigation(self, client):
        response = client.get("/")
        body = response.content.decode()
        assert response.status_code == 200
        assert "Visit count: 1" in body
        for label, href in [("Counter", "/"), ("About", "/about/"), ("Dashboard", "/dashboard/")]:
            assert f'href="{href}"' in body
            assert label in body

    def test_counter_rejects_post(self, client):
        assert client.post("/").status_code == 405


class AboutTests:
    def test_about_cookie_worked_after_counter(self, client, caplog):
        client.get("/")
        with caplog.at_level(logging.INFO):
            response = client.get("/about/")
        assert "Cookie Tested Successfully" in response.content.decode()
        assert "Cookie Tested Successfully" in caplog.text
        # The test cookie is deleted once it worked: the next visit explains instead.
        assert "Cookie Tested Successfully" not in client.get("/about/").content.decode()

    def test_about_without_cookie_explains(self, client):
        body = client.get("/about/").content.decode()
        assert "Cookie Tested Successfully" not in body
        assert "did not send the test cookie back" in body
        assert 'href="/"' in body

    def test_about_test_cookie_removed_from_session(self, client):
        client.get("/")
        client.get("/about/")
        assert "testcookie" not in client.session


class SessionEngineTests:
    @pytest.mark.parametrize("engine", SESSION_ENGINES)
    def test_engine_serves_counter(self, settings, engine, redis_or_locmem_cache):
        settings.SESSION_ENGINE = f"django.contrib.sessions.backends.{engine}"
        first, second = Client(), Client()
        assert [visit_count(first.get("/")) for _ in range(3)] == [1, 2, 3]
        assert visit_count(second.get("/")) == 1
        first.get("/")
        assert "Cookie Tested Successfully" in first.get("/about/").content.decode()

    def test_cookie_age_sets_max_age(self, settings, client):
        settings.SESSION_COOKIE_AGE = 3600
        cookie = client.get("/").cookies[settings.SESSION_COOKIE_NAME]
        assert cookie["max-age"] == 3600
        assert cookie["expires"]

    def test_expire_at_browser_close_has_no_max_age(self, settings, client):
        settings.SESSION_EXPIRE_AT_BROWSER_CLOSE = True
        cookie = client.get("/").cookies[settings.SESSION_COOKIE_NAME]
        assert cookie["max-age"] == ""
        assert cookie["expires"] == ""
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Lax"


class HealthTests:
    def test_healthz_reports_each_component(self, client, settings):
        response = client.get("/healthz")
        assert response.status_code == 200
        body = response.json()
        assert body["ok"] is True
        assert set(body["components"]) == {"database", "cache", "broker"}
        assert all(state["ok"] for state in body["components"].values())
        expected_broker = "redis" if settings.REDIS_URL else "filesystem"
        assert body["components"]["broker"]["detail"] == expected_broker
