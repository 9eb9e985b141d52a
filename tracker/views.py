"""``POST /t/event``: the door for the first-party script's events (static/tracker/events.js).

CSRF: ``navigator.sendBeacon`` cannot set the CSRF header, and the page's token in the body
would only move the problem, so the view is exempt from Django's token check and does its own
same-origin check instead (CSRF stays on for every other view). A cross-site page can make a
visitor's browser post here (a text/plain beacon needs no CORS preflight), but every browser
that can do so labels the request: ``Sec-Fetch-Site`` (all current browsers) says
``same-origin`` only for our own pages, and ``Origin``, sent with every cross-origin POST, names
the page's origin. A post is accepted when Sec-Fetch-Site is ``same-origin``, or, without it,
when Origin is this site's own (or one of ``CSRF_TRUSTED_ORIGINS``); anything else gets 403.
A client that is not a browser can send what it likes, but only into a session it holds
itself, which is no forgery; it is capped per minute like anyone.
"""

from __future__ import annotations

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from tracker.events import (
    EventRefused,
    event_build,
    event_name_clean,
    event_props_clean,
    event_rate_exceeded,
    event_store,
    is_event_tracked,
    stored_tracking_id,
)
from tracker.models import PATH_MAX_LENGTH

# A name, ten props of 100 characters and a path fit; nothing more is read.
EVENT_BODY_MAX_BYTES = 2048
EVENT_BODY_KEYS = frozenset({"name", "props", "path"})


def is_same_origin(request: HttpRequest) -> bool:
    """Return True for a post that a page of this site made (see the module's docstring)."""
    fetch_site = request.META.get("HTTP_SEC_FETCH_SITE")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.META.get("HTTP_ORIGIN")
    if not origin:
        return False
    try:
        own = f"{request.scheme}://{request.get_host()}"
    except DisallowedHost:  # no origin of ours to compare with
        return False
    return origin == own or origin in settings.CSRF_TRUSTED_ORIGINS


def event_payload(request: HttpRequest) -> dict:
    """Return the posted event's checked name, props and page path, or raise EventRefused.

    Reads at most EVENT_BODY_MAX_BYTES + 1 bytes, whatever the body claims to be.
    """
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise EventRefused("bad Content-Length") from None
    if declared > EVENT_BODY_MAX_BYTES:
        raise EventRefused(f"body over {EVENT_BODY_MAX_BYTES} bytes")
    body = request.read(EVENT_BODY_MAX_BYTES + 1)
    if len(body) > EVENT_BODY_MAX_BYTES:
        raise EventRefused(f"body over {EVENT_BODY_MAX_BYTES} bytes")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise EventRefused("body is not JSON") from None
    if not isinstance(payload, dict) or not payload.keys() <= EVENT_BODY_KEYS:
        raise EventRefused(f"body must be an object with keys among {sorted(EVENT_BODY_KEYS)}")
    path = payload.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/") or len(path) > PATH_MAX_LENGTH:
        raise EventRefused("path must be this site's path, starting with /")
    if not path.isprintable():
        raise EventRefused("path holds control characters")
    return {
        "name": event_name_clean(payload.get("name")),
        "props": event_props_clean(payload.get("props")),
        "path": path,
    }


@never_cache
@csrf_exempt  # replaced by is_same_origin: a beacon cannot carry the token's header
@require_POST
def event_collect(request: HttpRequest) -> HttpResponse:
    """Store one client-side event of a tracked visitor: 204 stored or ignored, 4xx refused."""
    if not is_same_origin(request):
        return HttpResponse("cross-origin event refused", status=403, content_type="text/plain")
    try:
        payload = event_payload(request)
    except EventRefused as error:
        return HttpResponse(str(error), status=400, content_type="text/plain")
    tracking_id = stored_tracking_id(request)
    if tracking_id is None or not is_event_tracked(request, path=payload["path"]):
        return HttpResponse(status=204)  # no tracked visitor: nothing to count, nothing said
    if event_rate_exceeded(tracking_id=tracking_id):
        return HttpResponse("too many events", status=429, content_type="text/plain")
    event_store(request, event_build(tracking_id=tracking_id, revenue=None, **payload))
    return HttpResponse(status=204)
