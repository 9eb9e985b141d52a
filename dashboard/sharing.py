"""Shared links: read-only access to the dashboard's aggregate panels through a secret token.

A token is a selector (12 characters, finds the row) followed by a verifier (43 characters,
256 random bits from ``secrets``). Only the verifier's SHA-256 is stored and it is compared with
``hmac.compare_digest``, so neither a copy of the database nor response timing gives a link away.

Tokens sit in the URL path (a link must work when pasted, without JavaScript), so they are kept
out of logs: the tracker never records /share/ paths, dashboard.logfilters rewrites them in
Django's and gunicorn's request loggers, and shared pages send ``Referrer-Policy: no-referrer``.
Access logs written elsewhere (a proxy's) are the operator's to keep: the README says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q

from dashboard.models import SharedLink

SELECTOR_BYTES = 9  # 12 URL-safe characters
VERIFIER_BYTES = 32  # 256 bits, 43 URL-safe characters
SELECTOR_LENGTH = 12
VERIFIER_LENGTH = 43
TOKEN_LENGTH = SELECTOR_LENGTH + VERIFIER_LENGTH
SHARE_PREFIX = "/share/"
# Compared against when no row has the selector, so a miss costs the same as a wrong verifier.
MISSING_HASH = "0" * 64
RATE_WINDOW_SECONDS = 60
TOUCH_EVERY = dt.timedelta(minutes=1)


def _verifier_hash(verifier: str) -> str:
    return hashlib.sha256(verifier.encode()).hexdigest()


def shared_link_create(
    *, user, label: str, expires_at: dt.datetime | None, allow_exports: bool
) -> tuple[SharedLink, str]:
    """Create a link; return it and its token, which is shown once and stored nowhere."""
    selector = secrets.token_urlsafe(SELECTOR_BYTES)
    verifier = secrets.token_urlsafe(VERIFIER_BYTES)
    link = SharedLink.objects.create(
        selector=selector,
        verifier_hash=_verifier_hash(verifier),
        label=label,
        created_by=user,
        expires_at=expires_at,
        allow_exports=allow_exports,
    )
    return link, selector + verifier


def shared_link_find(*, token: str, now: dt.datetime) -> SharedLink | None:
    """The active link this token opens, or None (wrong, revoked or expired alike)."""
    if len(token) != TOKEN_LENGTH:
        return None
    selector, verifier = token[:SELECTOR_LENGTH], token[SELECTOR_LENGTH:]
    link = SharedLink.objects.filter(selector=selector).first()
    expected = link.verifier_hash if link else MISSING_HASH
    if not hmac.compare_digest(_verifier_hash(verifier), expected) or link is None:
        return None
    return link if link.is_active(now=now) else None


def shared_link_revoke(*, link_id: int, now: dt.datetime) -> bool:
    """Revoke a link for good; False when it does not exist or was already revoked."""
    return bool(SharedLink.objects.filter(pk=link_id, revoked_at=None).update(revoked_at=now))


def shared_link_touch(*, link: SharedLink, now: dt.datetime) -> None:
    """Record that the link was used, at most one write a minute however busy it is."""
    stale = Q(last_used_at=None) | Q(last_used_at__lt=now - TOUCH_EVERY)
    SharedLink.objects.filter(stale, pk=link.pk).update(last_used_at=now)


def rate_limit_key(*, link_id: int, window: int) -> str:
    """The one place that names the shared links' rate-limit cache keys."""
    return f"dashboard:share-rate:v1:{link_id}:{window}"


def shared_link_allow_request(*, link: SharedLink, now: dt.datetime) -> bool:
    """Count a request against the link's per-minute budget (a fixed window in the cache)."""
    window = int(now.timestamp()) // RATE_WINDOW_SECONDS
    key = rate_limit_key(link_id=link.pk, window=window)
    cache.add(key, 0, timeout=RATE_WINDOW_SECONDS * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr: this request starts the window again
        cache.set(key, 1, timeout=RATE_WINDOW_SECONDS * 2)
        count = 1
    return count <= settings.SHARED_LINK_REQUESTS_PER_MINUTE
