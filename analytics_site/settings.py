"""Settings for the analytics site, read once from the environment.

Defaults run on a laptop with no servers (SQLite, local-memory cache, Celery's filesystem
broker under ``var/``); ``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and Redis.
Production mode is ``DEBUG=0``: it requires ``SECRET_KEY`` and passes ``check --deploy``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path

import dj_database_url
import dj_email_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
# A development checkout keeps its settings (DEBUG=1) in .env, written once by make; variables
# already set win, and without the file production rules apply. ENV_FILE names another file,
# or none when empty.
ENV_FILE = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    load_dotenv(ENV_FILE, override=False)
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    """Read a 0/1 (or true/false) flag; anything unrecognised is an error, not a guess."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 0 or 1, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from error


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def development_secret_key() -> str:
    """Generate the development key once and keep it, so sessions survive restarts."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG=0 (production mode); for development set DEBUG=1 "
            "(make install writes it into .env)."
        )
    SECRET_KEY = development_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "tracker",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "tracker.middleware.VisitTrackingMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "analytics_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "analytics_site.wsgi.application"
ASGI_APPLICATION = "analytics_site.asgi.application"

# Databases: SQLite in WAL mode by default, PostgreSQL through DATABASE_URL.
# Persistent connections: measured here, the counter page served ~880 req/s with them, ~180 without.
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
CONN_MAX_AGE = env_int("CONN_MAX_AGE", 600)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=True
    )
}
# How long a new connection is retried while PostgreSQL restarts before the request fails.
DATABASE_WAIT_SECONDS = 10
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "analytics_site.postgresql"
DATABASE_IS_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if DATABASE_IS_SQLITE:
    DATABASES["default"]["ENGINE"] = "analytics_site.sqlite3"  # checkpoints out of page views
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis, when set, is the Celery broker, Django's cache and the tracker's visit buffer.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

SESSION_ENGINES = {
    "db": "django.contrib.sessions.backends.db",
    "cache": "django.contrib.sessions.backends.cache",
    "cached_db": "django.contrib.sessions.backends.cached_db",
    "file": "django.contrib.sessions.backends.file",
    "signed_cookies": "django.contrib.sessions.backends.signed_cookies",
}
_session_engine = os.environ.get("SESSION_ENGINE", "db")
SESSION_ENGINE = SESSION_ENGINES.get(_session_engine, _session_engine)
SESSION_FILE_PATH = str(VAR_DIR / "sessions")
Path(SESSION_FILE_PATH).mkdir(parents=True, exist_ok=True)
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 1209600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# plotly.js comes from the plotly package itself: no CDN at run time.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("plotly", Path(importlib.util.find_spec("plotly").origin).parent / "package_data"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Production hardening, switched on by DEBUG=0.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# Tracker: read once here, resolved once by the middleware at start-up.
TRACKER_RESPECT_DNT = env_bool("TRACKER_RESPECT_DNT", True)
TRACKER_RAW_RETENTION_DAYS = env_int("TRACKER_RAW_RETENTION_DAYS", 30)
TRACKER_EXCLUDE_PATHS = env_list("TRACKER_EXCLUDE_PATHS", [])
# A visit ends after this many seconds without a page view (30 minutes, as in every analytics
# product people compare us with).
TRACKER_VISIT_TIMEOUT = env_int("TRACKER_VISIT_TIMEOUT", 1800)
# How many proxies in front of the site append to X-Forwarded-For: the visitor's address (looked
# up for its country, then forgotten) is the one the outermost of them saw. 0: the header is
# ignored, since any client can send one.
TRACKER_TRUSTED_PROXIES = env_int("TRACKER_TRUSTED_PROXIES", 0)
if TRACKER_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured("TRACKER_TRUSTED_PROXIES must be 0 or more")
# The currency of event revenue (an ISO 4217 code); amounts are kept as decimals in it.
TRACKER_CURRENCY = os.environ.get("TRACKER_CURRENCY", "EUR").strip().upper()
if not (len(TRACKER_CURRENCY) == 3 and TRACKER_CURRENCY.isascii() and TRACKER_CURRENCY.isalpha()):
    raise ImproperlyConfigured(f"TRACKER_CURRENCY must be a currency code: {TRACKER_CURRENCY!r}")
TRACKER_SINK = "redis" if REDIS_URL else "direct"
TRACKER_REDIS_STREAM = os.environ.get("TRACKER_REDIS_STREAM", "tracker:visits")
# TRACKER_ENABLED=0 removes the middleware: `make bench` compares the same app with and without.
TRACKER_ENABLED = env_bool("TRACKER_ENABLED", True)
if not TRACKER_ENABLED:
    MIDDLEWARE.remove("tracker.middleware.VisitTrackingMiddleware")

# Celery: Redis in production; the filesystem broker under var/ when no server is there.
CELERY_DIR = VAR_DIR / "celery"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600}
else:
    for folder in ("queue", "processed", "results", "control"):
        (CELERY_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DIR / "queue"),
        "data_folder_out": str(CELERY_DIR / "queue"),
        "processed_folder": str(CELERY_DIR / "processed"),
        "control_folder": str(CELERY_DIR / "control"),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = f"file://{CELERY_DIR / 'results'}"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Email (the reports): EMAIL_URL such as smtp://user:pass@host:587/?tls=1, parsed by
# dj-email-url (`_default_from_email=` sets the sender). Unset: development prints emails to the
# console; production uses Django's default, an SMTP server on localhost:25.
EMAIL_URL = os.environ.get("EMAIL_URL", "")
# A server that never answers must not hold a worker past the task's time limit.
EMAIL_TIMEOUT = 30
if EMAIL_URL:
    _email = dj_email_url.parse(EMAIL_URL)
    if "EMAIL_BACKEND" not in _email:
        raise ImproperlyConfigured(
            f"EMAIL_URL must start with one of {', '.join(sorted(dj_email_url.SCHEMES))}://"
        )
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
    EMAIL_PORT = _email["EMAIL_PORT"] or 25
    EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
    EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
    EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
    EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
    EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]
    if "DEFAULT_FROM_EMAIL" in _email:
        DEFAULT_FROM_EMAIL = _email["DEFAULT_FROM_EMAIL"]
    EMAIL_TIMEOUT = _email["EMAIL_TIMEOUT"] or EMAIL_TIMEOUT
elif DEBUG:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# The site's address as its users reach it: the links in emailed reports are absolute. In
# production, unset, it is the first allowed host over HTTPS (the scheme production enforces),
# never a loopback address that no reader of the email can open.
_default_site_url = (
    "http://127.0.0.1:8000" if DEBUG else f"https://{ALLOWED_HOSTS[0].lstrip('.')}"
)
SITE_URL = os.environ.get("SITE_URL", _default_site_url).rstrip("/")

# Shared dashboard links: requests per minute through one link (a page, its panels, polling).
SHARED_LINK_REQUESTS_PER_MINUTE = 120

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
