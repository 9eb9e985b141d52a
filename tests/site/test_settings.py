"""Settings come from the environment, once; production mode is strict. Run in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {"DEBUG": "0", "SECRET_KEY": "x" * 60 + "-production-test-key-not-secret"}


def clean_environment(**env: str) -> dict[str, str]:
    """This process's environment without the settings a test sets (or the suite itself set)."""
    ours = ("SESSION_", "DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    # Not the checkout's .env either, unless a test names one.
    clean["ENV_FILE"] = ""
    clean.update(env)
    return clean


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = clean_environment(**env)
    clean["DJANGO_SETTINGS_MODULE"] = "analytics_site.settings"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_value(expression: str, **env: str):
    result = run_python(
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({expression}))",
        **env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


class EnvironmentSettingsTests:
    @pytest.mark.parametrize(
        ("short_name", "module"),
        [
            ("db", "django.contrib.sessions.backends.db"),
            ("cache", "django.contrib.sessions.backends.cache"),
            ("cached_db", "django.contrib.sessions.backends.cached_db"),
            ("file", "django.contrib.sessions.backends.file"),
            ("signed_cookies", "django.contrib.sessions.backends.signed_cookies"),
        ],
    )
    def test_session_engine_short_names(self, short_name, module):
        assert (
            settings_value("settings.SESSION_ENGINE", DEBUG="1", SESSION_ENGINE=short_name)
            == module
        )

    def test_cookie_settings_from_environment(self):
        age, at_close = settings_value(
            "[settings.SESSION_COOKIE_AGE, settings.SESSION_EXPIRE_AT_BROWSER_CLOSE]",
            DEBUG="1",
            SESSION_COOKIE_AGE="600",
            SESSION_EXPIRE_AT_BROWSER_CLOSE="1",
        )
        assert (age, at_close) == (600, True)

    def test_defaults_are_sqlite_without_redis(self):
        engine, cache_backend, broker = settings_value(
            "[settings.DATABASES['default']['ENGINE'], settings.CACHES['default']['BACKEND'], "
            "settings.CELERY_BROKER_URL]",
            DEBUG="1",
            DATABASE_URL="",
            REDIS_URL="",
        )
        assert engine == "analytics_site.sqlite3"  # Django's, checkpointing in a thread
        assert cache_backend.endswith("LocMemCache")
        assert broker == "filesystem://"

    def test_urls_switch_to_postgres_and_redis(self):
        engine, cache_backend, broker, max_age = settings_value(
            "[settings.DATABASES['default']['ENGINE'], settings.CACHES['default']['BACKEND'], "
            "settings.CELERY_BROKER_URL, settings.DATABASES['default']['CONN_MAX_AGE']]",
            DEBUG="1",
            DATABASE_URL="postgres://u@127.0.0.1:5432/db",
            REDIS_URL="redis://127.0.0.1:6379/3",
        )
        assert engine == "analytics_site.postgresql"  # Django's, retrying connects
        assert cache_backend.endswith("RedisCache")
        assert broker == "redis://127.0.0.1:6379/3"
        assert max_age > 0

    def test_sqlite_runs_in_wal_mode(self):
        result = run_python(
            "import django; django.setup(); from django.db import connection; "
            "c = connection.cursor(); c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])",
            DEBUG="1",
            DATABASE_URL="",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "wal"

    def test_bad_flag_is_a_clear_error(self):
        result = run_python("import django; django.setup()", DEBUG="maybe")
        assert result.returncode != 0
        assert "DEBUG must be 0 or 1" in result.stderr


class ProductionModeTests:
    def test_refuses_to_start_without_secret_key(self):
        result = run_python("import django; django.setup()", DEBUG="0")
        assert result.returncode != 0
        assert "SECRET_KEY is required" in result.stderr

    def test_env_file_written_by_make_gives_development_settings(self, tmp_path):
        env_file = tmp_path / ".env"
        subprocess.run(
            ["make", "--silent", f"ENV_FILE={env_file}", str(env_file)], cwd=ROOT, check=True
        )

        assert "DEBUG=1" in env_file.read_text().splitlines()
        assert settings_value("settings.DEBUG", ENV_FILE=str(env_file)) is True

    def test_environment_wins_over_env_file(self, tmp_path):
        env_file = tmp_path / ".env"
        env_file.write_text("DEBUG=1\n")

        result = run_python("import django; django.setup()", ENV_FILE=str(env_file), DEBUG="0")

        assert result.returncode != 0
        assert "SECRET_KEY is required" in result.stderr

    def test_without_env_file_production_rules_apply(self, tmp_path):
        result = run_python("import django; django.setup()", ENV_FILE=str(tmp_path / "none"))

        assert result.returncode != 0
        assert "SECRET_KEY is required" in result.stderr

    def test_migrations_are_checked_without_any_setting(self):
        # `manage.py makemigrations --check` is a development task: it needs no secret key.
        result = subprocess.run(
            [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
            cwd=ROOT,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No changes detected" in result.stdout

    def test_check_deploy_passes(self):
        result = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env=clean_environment(**PRODUCTION_ENV),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_production_cookies_are_secure(self):
        flags = settings_value(
            "[settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, "
            "settings.SESSION_COOKIE_HTTPONLY, settings.SESSION_COOKIE_SAMESITE]",
            **PRODUCTION_ENV,
        )
        assert flags == [True, True, True, "Lax"]

    def test_report_links_point_at_the_site_in_production(self):
        """Unset, SITE_URL is the first allowed host over HTTPS, never a loopback address."""
        env = {**PRODUCTION_ENV, "ALLOWED_HOSTS": "stats.example.org,www.example.org"}
        assert settings_value("settings.SITE_URL", **env) == "https://stats.example.org"
        env["SITE_URL"] = "https://analytics.example.org:8443/"
        assert settings_value("settings.SITE_URL", **env) == "https://analytics.example.org:8443"
        assert settings_value("settings.SITE_URL", DEBUG="1") == "http://127.0.0.1:8000"
