"""EMAIL_URL: read once by the settings (dj-email-url); the console backend in development."""

from __future__ import annotations

from tests.site.test_settings import PRODUCTION_ENV, run_python, settings_value

EMAIL_SETTINGS = (
    "[settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_HOST_USER,"
    " settings.EMAIL_HOST_PASSWORD, settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL,"
    " settings.EMAIL_TIMEOUT, settings.DEFAULT_FROM_EMAIL]"
)
SMTP = "django.core.mail.backends.smtp.EmailBackend"


class EmailSettingsTests:
    def test_email_url_configures_smtp(self):
        url = "smtp://reports%40example.org:p%40ss@mail.example.org:587/?tls=1"
        assert settings_value(EMAIL_SETTINGS, DEBUG="1", EMAIL_URL=url) == [
            SMTP,
            "mail.example.org",
            587,
            "reports@example.org",
            "p@ss",
            True,
            False,
            30,
            "webmaster@localhost",
        ]

    def test_email_url_sender_and_ssl(self):
        url = "smtp://mail.example.org:465/?ssl=1&timeout=5&_default_from_email=stats@example.org"
        values = settings_value(EMAIL_SETTINGS, DEBUG="1", EMAIL_URL=url)
        assert values[1:3] == ["mail.example.org", 465]
        assert values[5:] == [False, True, 5, "stats@example.org"]

    def test_development_default_is_console(self):
        backend = settings_value("settings.EMAIL_BACKEND", DEBUG="1")
        assert backend == "django.core.mail.backends.console.EmailBackend"

    def test_production_default_is_local_smtp(self):
        values = settings_value(
            "[settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT,"
            " settings.EMAIL_TIMEOUT]",
            **PRODUCTION_ENV,
        )
        assert values == [SMTP, "localhost", 25, 30]

    def test_unknown_scheme_is_a_clear_error(self):
        result = run_python("import django; django.setup()", DEBUG="1", EMAIL_URL="smpt://x")
        assert result.returncode != 0
        assert "EMAIL_URL must start with one of" in result.stderr
