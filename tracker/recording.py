"""Turn one tracked request and its response into one raw visit, and hand it to a sink.

A visit holds the session's tracking id (random and time-ordered, a UUIDv7 kept in the session
data), never the session key; the referrer's host, never its URL; browser / OS / device
families, never the user agent; the path and three UTM fields, never the query string; the
country, never the IP address. No cookie.
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.core.exceptions import DisallowedHost
from django.http.request import split_domain_port

from tracker.countries import request_country
from tracker.ids import RANDOM_BITS, uuid7
from tracker.models import HOST_MAX_LENGTH, PATH_MAX_LENGTH, UTM_MAX_LENGTH

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase
    from django.http import HttpRequest, HttpResponse, QueryDict

    from tracker.buffer import VisitSink
    from tracker.classify import UserAgentClass

# Private to the tracker; it lives in the session data so that cycle_key() (login) keeps it and
# flush() (logout) drops it.
TRACKING_ID_SESSION_KEY = "_tracker_id"
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign")
NO_UTM = dict.fromkeys(UTM_FIELDS, "")
# PostgreSQL refuses NUL in text; the other control characters only make rows unreadable.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def clean_text(value: str, *, max_length: int) -> str:
    """Return a storable string: control characters and unencodable code points replaced, capped."""
    if len(value) <= max_length and value.isascii() and value.isprintable():
        return value  # most paths: printable ASCII (0x20-0x7e), nothing to replace or cut
    value = value[: max_length * 2]
    value = value.encode("utf-8", "replace").decode("utf-8")
    return CONTROL_CHARACTERS.sub("\ufffd", value)[:max_length]


def tracking_id_for(session: SessionBase) -> uuid.UUID:
    """Return the session's tracking id, creating it (and so the session) on the first visit."""
    stored = session.get(TRACKING_ID_SESSION_KEY)
    if isinstance(stored, str):
        try:
            return uuid.UUID(stored)
        except ValueError:
            pass
    tracking_id = uuid7()
    session[TRACKING_ID_SESSION_KEY] = str(tracking_id)
    return tracking_id


def own_host(request: HttpRequest) -> str:
    try:
        host = request.get_host()
    except DisallowedHost:
        return ""
    return split_domain_port(host)[0]


def referrer_host(*, referrer: str, site_host: str) -> str:
    """Return the referring site's host, or "" for none, a malformed URL or this same site."""
    if not referrer:
        return ""
    try:
        host = urlsplit(referrer).hostname or ""
    except ValueError:
        return ""
    host = host.rstrip(".")
    if not host or host == site_host.lower().rstrip("."):
        return ""
    return clean_text(host, max_length=HOST_MAX_LENGTH)


def utm_fields(query: QueryDict) -> dict[str, str]:
    return {
        field: clean_text(query.get(field, ""), max_length=UTM_MAX_LENGTH) for field in UTM_FIELDS
    }


def visit_build(
    *,
    request: HttpRequest,
    response: HttpResponse,
    agent: UserAgentClass,
    elapsed_ms: int,
    trusted_proxies: int = 0,
) -> dict:
    """Return the visit row (field name -> value) for a tracked request; no side effect but
    creating the session's tracking id."""
    # Most page views have no query string and no referrer: skip parsing what is not there.
    utm = utm_fields(request.GET) if request.META.get("QUERY_STRING") else NO_UTM
    referrer = request.META.get("HTTP_REFERER", "")
    return {
        # An event id only has to be unique: the random module's generator, reseeded in every
        # forked worker, spares the page view the system call that os.urandom makes.
        "event_id": uuid7(random_bits=random.getrandbits(RANDOM_BITS)),
        "tracking_id": tracking_id_for(request.session),
        "visited_at": datetime.now(UTC),
        "path": clean_text(request.path, max_length=PATH_MAX_LENGTH) or "/",
        **utm,
        "referrer_host": (
            referrer_host(referrer=referrer, site_host=own_host(request)) if referrer else ""
        ),
        "browser": agent.browser,
        "os": agent.os,
        "device": agent.device,
        "country": request_country(request.META, trusted_proxies=trusted_proxies),
        "status_code": response.status_code,
        "response_ms": max(elapsed_ms, 0),
    }


def visit_record(
    *,
    request: HttpRequest,
    response: HttpResponse,
    agent: UserAgentClass,
    elapsed_ms: int,
    sink: VisitSink,
    trusted_proxies: int = 0,
) -> None:
    """Append one raw visit through the sink: the only write the request path makes."""
    sink.write(
        visit_build(
            request=request,
            response=response,
            agent=agent,
            elapsed_ms=elapsed_ms,
            trusted_proxies=trusted_proxies,
        )
    )
