"""Probe each component the site depends on, for ``/healthz``."""

from __future__ import annotations

from django.core.cache import caches
from django.db import connection


def _probe(check) -> dict:
    try:
        return {"ok": True, "detail": check()}
    except Exception as error:  # noqa: BLE001 - a health check reports, it does not raise
        return {"ok": False, "detail": type(error).__name__}


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _cache() -> str:
    cache = caches["default"]
    cache.set("healthz:probe", "1", timeout=5)
    if cache.get("healthz:probe") != "1":
        raise RuntimeError("cache did not return the probe")
    return type(cache).__name__


def _broker() -> str:
    from analytics_site.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return conn.transport.driver_name


def component_states() -> dict[str, dict]:
    """Return ``{component: {"ok": bool, "detail": str}}`` for database, cache and broker."""
    return {
        "database": _probe(_database),
        "cache": _probe(_cache),
        "broker": _probe(_broker),
    }
