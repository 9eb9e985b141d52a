"""Events (counters): what a visitor did, recorded through the page views' own sinks.

An event is one row appended to ``Event`` by the sink the middleware already holds (``DirectSink``,
``PostgresPipelineSink`` or ``RedisSink``), so it gets a page view's guarantees: one append on the
request path, a unique ``event_id`` that makes a re-drain or a retry harmless, and the same
fallbacks when Redis or PostgreSQL fail. Site code calls ``record_event`` (re-exported as
``tracker.record_event``); the first-party script posts to ``/t/event`` (``tracker.views``).

What an event may carry is checked here, once, for both doors: a name of 1-64 letters, digits,
spaces and ``_-.:/``; at most 10 props of short strings that do not look like an email address
or a phone or card number; a revenue as a ``Decimal`` in ``TRACKER_CURRENCY``.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.db import connections

from tracker.buffer import EVENTS
from tracker.classify import OPT_OUT_HEADERS, announces_bot, classify_user_agent, opted_out
from tracker.ids import RANDOM_BITS, uuid7
from tracker.models import EVENT_NAME_MAX_LENGTH, PATH_MAX_LENGTH
from tracker.recording import TRACKING_ID_SESSION_KEY, clean_text, tracking_id_for

if TYPE_CHECKING:
    from django.http import HttpRequest

    from tracker.middleware import VisitTrackingMiddleware

logger = logging.getLogger(__name__)

# The request attribute through which the middleware lends its sink and settings to the events
# recorded while it serves that request.
REQUEST_TRACKER_ATTRIBUTE = "visit_tracker"
PROPS_MAX_KEYS = 10
PROP_VALUE_MAX_LENGTH = 100
NAME_PUNCTUATION = frozenset(" _-.:/")
# For ASCII names, one compiled match (a tenth of the per-character check that the others get:
# Unicode's \w also takes combining marks and connector punctuation, which are no letters).
ASCII_EVENT_NAME = re.compile(r"[A-Za-z0-9 _.:/-]+")
# Personal data must not slip in through props: an email address anywhere in a value, or nine
# or more digits in a row, separators allowed (a phone or card number; a date has eight).
EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
LONG_DIGIT_RUN = re.compile(r"\d(?:[\s\-.()/]*\d){8,}")
# Revenue: at most 4 decimal places (enough for any currency's minor unit) and 12 whole digits.
REVENUE_MAX = Decimal(10) ** 12
REVENUE_EXPONENT_MIN = -4
# The endpoint's cap per visitor: a page of a person's clicks fits easily, a flood does not.
EVENTS_PER_VISITOR_PER_MINUTE = 60
RATE_KEY_PREFIX = "tracker:event-rate:"


class EventRefused(ValueError):
    """An event's name, props or revenue is not acceptable: a programming error in site code,
    a 400 at the endpoint."""


# Names and prop keys already accepted: site code sends the same few again and again. Bounded,
# so that a flood of different names cannot grow it.
_accepted_names: set[str] = set()
ACCEPTED_NAMES_MAX = 1024


def event_name_clean(name: object) -> str:
    """Return the name if it is 1-64 letters, digits, spaces and ``_-.:/``, else raise."""
    if not isinstance(name, str):
        raise EventRefused(f"event name must be a string, not {type(name).__name__}")
    if name in _accepted_names:
        return name
    if not 1 <= len(name) <= EVENT_NAME_MAX_LENGTH:
        raise EventRefused(f"event name must be 1-{EVENT_NAME_MAX_LENGTH} characters long")
    if name[0] == " " or name[-1] == " ":
        raise EventRefused("event name must not start or end with a space")
    if (
        ASCII_EVENT_NAME.fullmatch(name) is None
        if name.isascii()
        else not all(char.isalnum() or char in NAME_PUNCTUATION for char in name)
    ):
        raise EventRefused(
            f"event name {name!r} may hold only letters, digits, spaces and _-.:/"
        )
    if len(_accepted_names) < ACCEPTED_NAMES_MAX:
        _accepted_names.add(name)
    return name


def event_props_clean(props: object) -> dict[str, str]:
    """Return the props as a dict of strings, or raise if they could carry personal data or
    grow the table: at most 10 keys named like events, values of at most 100 characters."""
    if props is None:
        return {}
    if type(props) is not dict and not isinstance(props, Mapping):
        raise EventRefused(f"props must be a mapping, not {type(props).__name__}")
    if len(props) > PROPS_MAX_KEYS:
        raise EventRefused(f"at most {PROPS_MAX_KEYS} props, not {len(props)}")
    cleaned = {}
    for key, value in props.items():
        try:
            event_name_clean(key)
        except EventRefused as error:
            raise EventRefused(f"prop key: {error}") from None
        if type(value) is str:
            text = value
        elif isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        else:
            raise EventRefused(f"prop {key!r} must be a string or an integer")
        if len(text) > PROP_VALUE_MAX_LENGTH:
            raise EventRefused(f"prop {key!r} is longer than {PROP_VALUE_MAX_LENGTH} characters")
        if not text.isprintable():
            raise EventRefused(f"prop {key!r} holds control characters")
        if "@" in text and EMAIL_LIKE.search(text):
            raise EventRefused(f"prop {key!r} looks like an email address")
        if LONG_DIGIT_RUN.search(text):
            raise EventRefused(f"prop {key!r} holds a long run of digits (a phone or card?)")
        cleaned[key] = text
    return cleaned


def event_revenue_clean(revenue: object) -> Decimal | None:
    """Return the revenue as a Decimal, or raise: never a float, which cannot hold a price."""
    if revenue is None:
        return None
    if isinstance(revenue, bool) or not isinstance(revenue, Decimal | int):
        raise EventRefused(
            f"revenue must be a Decimal (or an int), not {type(revenue).__name__}"
        )
    amount = Decimal(revenue)
    try:
        if not amount.is_finite() or abs(amount) >= REVENUE_MAX:
            raise EventRefused(f"revenue {amount} is out of range")
    except InvalidOperation:
        raise EventRefused(f"revenue {amount} is not a number") from None
    if amount.as_tuple().exponent < REVENUE_EXPONENT_MIN:
        raise EventRefused(f"revenue {amount} has more than 4 decimal places")
    return amount


def request_tracker(request: HttpRequest) -> VisitTrackingMiddleware | None:
    return getattr(request, REQUEST_TRACKER_ATTRIBUTE, None)


def is_event_tracked(request: HttpRequest, *, path: str) -> bool:
    """Return True when events of this request may be recorded: a human (no crawler, no bot),
    no opt-out (when respected), a page path not excluded, and the tracker in place."""
    tracker = request_tracker(request)
    if tracker is None or not hasattr(request, "session"):
        return False
    meta = request.META
    agent = classify_user_agent(meta.get("HTTP_USER_AGENT", ""))
    return not (
        agent.is_bot
        or announces_bot(meta)
        # Most requests carry no opt-out header: one set operation settles them.
        or (
            tracker.respect_dnt
            and not meta.keys().isdisjoint(OPT_OUT_HEADERS)
            and opted_out(meta)
        )
        or tracker.path_exclusion.excludes(path)
    )


def event_build(
    *, tracking_id: uuid.UUID, name: str, path: str, props: dict, revenue: Decimal | None
) -> dict:
    """Return the event row (field name -> value) of already checked values."""
    return {
        "event_id": uuid7(random_bits=random.getrandbits(RANDOM_BITS)),
        "tracking_id": tracking_id,
        "occurred_at": datetime.now(UTC),
        "name": name,
        "path": clean_text(path, max_length=PATH_MAX_LENGTH) or "/",
        "props": props,
        "revenue": revenue,
    }


def event_store(request: HttpRequest, event: dict) -> bool:
    """Hand the event to the middleware's sink; return False if that failed (logged).

    Inside a transaction the event is inserted on Django's own connection, in a savepoint:
    it commits or rolls back with what the site code did, whichever sink is configured (the
    pipeline sink does the same for visits; a Redis XADD could not be taken back).
    """
    tracker = request.visit_tracker
    sink = tracker.sink
    try:
        if connections["default"].in_atomic_block:
            getattr(sink, "fallback", sink).write(event, EVENTS)
        else:
            sink.write(event, EVENTS)
    except Exception:
        # Bookkeeping never breaks a page: log it, count it, go on.
        tracker.failure_count += 1
        logger.exception(
            "Recording event %r failed (%d failures)", event["name"], tracker.failure_count
        )
        return False
    return True


def record_event(
    request: HttpRequest,
    name: str,
    *,
    props: Mapping[str, str | int] | None = None,
    revenue: Decimal | int | None = None,
) -> bool:
    """Record one event for the request's visitor; return True if it was stored (or sent).

    Bad input raises ``ValueError`` (``EventRefused``) whether or not the request is tracked,
    so that a mistake shows in development. Crawlers, opted-out requests (DNT / GPC), excluded
    paths and requests the tracker middleware did not see record nothing. A visitor with a
    session but no tracking id yet gets one, as its first page view would give it.
    """
    name = event_name_clean(name)
    props = event_props_clean(props)
    revenue = event_revenue_clean(revenue)
    path = request.path
    if not is_event_tracked(request, path=path):
        return False
    event = event_build(
        tracking_id=tracking_id_for(request.session),
        name=name,
        path=path,
        props=props,
        revenue=revenue,
    )
    return event_store(request, event)


def stored_tracking_id(request: HttpRequest) -> uuid.UUID | None:
    """Return the session's tracking id if it has one already; never create it."""
    session = getattr(request, "session", None)
    if session is None or TRACKING_ID_SESSION_KEY not in session:
        return None
    stored = session.get(TRACKING_ID_SESSION_KEY)
    try:
        return uuid.UUID(stored) if isinstance(stored, str) else None
    except ValueError:
        return None


def event_rate_exceeded(*, tracking_id: uuid.UUID, now: float | None = None) -> bool:
    """Count one more event of this visitor in the current minute; return True past the cap.

    The Django cache holds the counter: Redis when ``REDIS_URL`` is set (shared by every
    worker), else each process's memory (the cap is then per worker process).
    """
    minute = int((time.time() if now is None else now) // 60)
    key = f"{RATE_KEY_PREFIX}{tracking_id.hex}:{minute}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=120)
        count = 1
    return count > EVENTS_PER_VISITOR_PER_MINUTE
