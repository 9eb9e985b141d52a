"""What the tracker stores: raw visits (the write side) and the rollups derived from them.

No model holds a session key, an IP address, a raw user agent or a query string.
"""

from __future__ import annotations

from django.db import models

PATH_MAX_LENGTH = 500
UTM_MAX_LENGTH = 100
HOST_MAX_LENGTH = 253
FAMILY_MAX_LENGTH = 50


class Device(models.TextChoices):
    DESKTOP = "desktop", "Desktop"
    MOBILE = "mobile", "Mobile"
    TABLET = "tablet", "Tablet"
    OTHER = "other", "Other"


class Visit(models.Model):
    """One raw page view, appended by the request path and never updated.

    The auto-increment id is the insertion order that aggregation uses as its watermark, so a
    visit that arrives late (from the Redis buffer) is still aggregated exactly once.
    """

    id = models.BigAutoField(primary_key=True)
    # Unique per page view: re-draining the Redis buffer or retrying an insert cannot double-count.
    event_id = models.UUIDField(unique=True)
    # The tracked session's own random id (a time-ordered UUIDv7), kept in the session data;
    # never the session key.
    tracking_id = models.UUIDField()
    visited_at = models.DateTimeField(db_index=True)
    path = models.CharField(max_length=PATH_MAX_LENGTH)
    utm_source = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    utm_medium = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    utm_campaign = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    referrer_host = models.CharField(max_length=HOST_MAX_LENGTH, blank=True, default="")
    browser = models.CharField(max_length=FAMILY_MAX_LENGTH, blank=True, default="")
    os = models.CharField(max_length=FAMILY_MAX_LENGTH, blank=True, default="")
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.OTHER)
    status_code = models.PositiveSmallIntegerField()
    response_ms = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["tracking_id", "visited_at"], name="visit_session_time")]

    def __str__(self) -> str:
        return f"{self.visited_at:%Y-%m-%d %H:%M:%S} {self.path}"


class TrackedSession(models.Model):
    """One tracked session's summary, derived from its visits by aggregation."""

    tracking_id = models.UUIDField(primary_key=True)
    # Range queries on first_seen use the (first_seen, pageviews) index below.
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    pageviews = models.PositiveIntegerField()
    duration_seconds = models.PositiveIntegerField(default=0)
    entry_path = models.CharField(max_length=PATH_MAX_LENGTH)
    exit_path = models.CharField(max_length=PATH_MAX_LENGTH)
    # Where the session came from and on what: taken from its first visit.
    referrer_host = models.CharField(max_length=HOST_MAX_LENGTH, blank=True, default="")
    utm_source = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    utm_medium = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    utm_campaign = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    browser = models.CharField(max_length=FAMILY_MAX_LENGTH, blank=True, default="")
    os = models.CharField(max_length=FAMILY_MAX_LENGTH, blank=True, default="")
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.OTHER)
    # Set once the Django session behind it has expired; its analytics are kept.
    ended = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["first_seen", "pageviews"], name="session_start_pages"),
            # The busiest sessions of a range: read from the top pageviews down.
            models.Index(fields=["pageviews", "first_seen"], name="session_pages_start"),
        ]

    def __str__(self) -> str:
        return f"{self.tracking_id} ({self.pageviews} pages)"

    @property
    def bounced(self) -> bool:
        return self.pageviews == 1


class PageHourly(models.Model):
    """Pageviews and distinct sessions of one path in one hour of visit time."""

    hour = models.DateTimeField()
    path = models.CharField(max_length=PATH_MAX_LENGTH)
    pageviews = models.PositiveIntegerField()
    sessions = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "path"], name="page_hourly_unique"),
        ]
        indexes = [models.Index(fields=["path", "hour"], name="page_hourly_path")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.path}: {self.pageviews}"


# The fields of SessionCounts that add up across hours, days and batches.
SESSION_MEASURES = ["sessions", "pageviews", "bounces", "duration_seconds"]


class SessionCounts(models.Model):
    """What the session rollups count per dimension value; SessionHourly and SessionDaily add
    the hour or the day the sessions started in.

    ``all`` carries the totals (value ""); ``pages`` buckets sessions by their pageviews
    (1, 2, 3, 4-5, 6-10, 11-20, 21+); the others are the session's entry and exit page, its
    first referrer and UTM fields, and its browser, OS and device.
    """

    class Dimension(models.TextChoices):
        ALL = "all", "All sessions"
        ENTRY_PATH = "entry_path", "Entry page"
        EXIT_PATH = "exit_path", "Exit page"
        REFERRER = "referrer_host", "Referrer"
        UTM_SOURCE = "utm_source", "UTM source"
        UTM_MEDIUM = "utm_medium", "UTM medium"
        UTM_CAMPAIGN = "utm_campaign", "UTM campaign"
        BROWSER = "browser", "Browser"
        OS = "os", "Operating system"
        DEVICE = "device", "Device"
        PAGES = "pages", "Pages per session"

    dimension = models.CharField(max_length=20, choices=Dimension.choices)
    value = models.CharField(max_length=PATH_MAX_LENGTH, blank=True, default="")
    sessions = models.PositiveIntegerField()
    pageviews = models.PositiveIntegerField()
    bounces = models.PositiveIntegerField()
    duration_seconds = models.PositiveBigIntegerField()

    class Meta:
        abstract = True


class SessionHourly(SessionCounts):
    """Sessions grouped by the hour they started and one dimension's value."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "dimension", "value"], name="session_hourly_unique"
            ),
        ]
        indexes = [models.Index(fields=["dimension", "hour"], name="session_hourly_dim")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.dimension}={self.value}: {self.sessions}"


class PageDaily(models.Model):
    """PageHourly summed over one UTC day, so a month-long range reads 30 rows per path.

    ``sessions`` is the sum of the day's hourly distinct sessions, like a range of hours.
    """

    day = models.DateTimeField()  # the UTC midnight starting the day
    path = models.CharField(max_length=PATH_MAX_LENGTH)
    pageviews = models.PositiveIntegerField()
    sessions = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "path"], name="page_daily_unique")]
        indexes = [
            models.Index(fields=["path", "day"], name="page_daily_path"),
            # Top pages of a range read this index alone (index-only on PostgreSQL): aggregation
            # rewrites the days a batch touches, which leaves their rows scattered thinly over
            # the table.
            models.Index(fields=["day", "path", "pageviews", "sessions"], name="page_daily_totals"),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.path}: {self.pageviews}"


class SessionDaily(SessionCounts):
    """SessionHourly summed over one UTC day of session starts."""

    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "dimension", "value"], name="session_daily_unique"
            ),
        ]
        indexes = [
            # Every column the dashboard reads, so its ranges are read from this index alone
            # (index-only on PostgreSQL); see PageDaily's.
            models.Index(
                fields=[
                    "dimension",
                    "day",
                    "value",
                    "sessions",
                    "pageviews",
                    "bounces",
                    "duration_seconds",
                ],
                name="session_daily_totals",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.dimension}={self.value}: {self.sessions}"


class AggregationState(models.Model):
    """How far aggregation has got: the highest raw visit id already in the rollups.

    Its row is locked for the length of a run, so two workers or two beats never aggregate the
    same visits twice.
    """

    name = models.CharField(max_length=50, primary_key=True)
    last_visit_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: up to visit {self.last_visit_id}"
