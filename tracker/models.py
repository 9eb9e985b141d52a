"""What the tracker stores: raw visits (the write side) and the rollups derived from them.

No model holds a session key, an IP address, a raw user agent or a query string.
"""

from __future__ import annotations

import json

from django.db import models

PATH_MAX_LENGTH = 500
UTM_MAX_LENGTH = 100
HOST_MAX_LENGTH = 253
FAMILY_MAX_LENGTH = 50
# Where a page view came from, and on what: a visit and a visitor take them from their first.
SOURCE_FIELDS = ["referrer_host", "utm_source", "utm_medium", "utm_campaign"]
DEVICE_FIELDS = ["browser", "os", "device"]
COUNTRY_MAX_LENGTH = 2  # ISO 3166-1 alpha-2; "" when unknown


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
    country = models.CharField(max_length=COUNTRY_MAX_LENGTH, blank=True, default="")
    status_code = models.PositiveSmallIntegerField()
    response_ms = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["tracking_id", "visited_at"], name="visit_session_time")]

    def __str__(self) -> str:
        return f"{self.visited_at:%Y-%m-%d %H:%M:%S} {self.path}"


class TrackedSession(models.Model):
    """One visitor: a tracked session's summary over all its visits, derived by aggregation."""

    tracking_id = models.UUIDField(primary_key=True)
    # Range queries on first_seen use the (first_seen, pageviews) index below.
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    pageviews = models.PositiveIntegerField()
    visits = models.PositiveIntegerField(default=1)
    duration_seconds = models.PositiveIntegerField(default=0)
    entry_path = models.CharField(max_length=PATH_MAX_LENGTH)
    exit_path = models.CharField(max_length=PATH_MAX_LENGTH)
    # Where the visitor first came from and on what: taken from its first page view.
    referrer_host = models.CharField(max_length=HOST_MAX_LENGTH, blank=True, default="")
    utm_source = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    utm_medium = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    utm_campaign = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    browser = models.CharField(max_length=FAMILY_MAX_LENGTH, blank=True, default="")
    os = models.CharField(max_length=FAMILY_MAX_LENGTH, blank=True, default="")
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.OTHER)
    country = models.CharField(max_length=COUNTRY_MAX_LENGTH, blank=True, default="")
    # Set once the Django session behind it has expired; its analytics are kept.
    ended = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["first_seen", "pageviews"], name="session_start_pages"),
            # The busiest visitors of a range: read from the top pageviews down.
            models.Index(fields=["pageviews", "first_seen"], name="session_pages_start"),
        ]

    def __str__(self) -> str:
        return f"{self.tracking_id} ({self.pageviews} pages)"

    @property
    def bounced(self) -> bool:
        return self.pageviews == 1


class PagePath(models.Model):
    """A number for each path, so that a visit's pages are stored as a short list of integers."""

    id = models.AutoField(primary_key=True)  # integer[] elements on PostgreSQL
    path = models.CharField(max_length=PATH_MAX_LENGTH, unique=True)

    def __str__(self) -> str:
        return self.path


class PageSequenceField(models.Field):
    """A visit's page ids in the order viewed: ``integer[]`` on PostgreSQL (GIN-indexed, sliced
    in SQL), a JSON array in text elsewhere (read with SQLite's json functions)."""

    def db_type(self, connection) -> str:
        return "integer[]" if connection.vendor == "postgresql" else "text"

    def from_db_value(self, value, expression, connection):
        return json.loads(value) if isinstance(value, str) else value

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None or connection.vendor == "postgresql":
            return value
        return json.dumps(value)


@PageSequenceField.register_lookup
class ListsAnyOf(models.Lookup):
    """``pages__lists_any_of=<a query of PagePath ids>``: the visit viewed one of those pages
    (PostgreSQL's overlap operator, which the GIN index answers)."""

    lookup_name = "lists_any_of"

    def get_db_prep_lookup(self, value, connection):
        return ("%s", [value])  # only ever a subquery, compiled by process_rhs

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} && ARRAY{rhs}::integer[]", [*lhs_params, *rhs_params]
        return (
            f"EXISTS (SELECT 1 FROM json_each({lhs}) WHERE value IN {rhs})",  # noqa: S608 - compiled SQL
            [*lhs_params, *rhs_params],
        )


class VisitSummary(models.Model):
    """One visit: a visitor's run of page views with no gap over TRACKER_VISIT_TIMEOUT that no
    page view from another source interrupts. Derived by aggregation; what filters query.
    """

    id = models.BigAutoField(primary_key=True)
    tracking_id = models.UUIDField()
    number = models.PositiveIntegerField()  # 1 for the visitor's first visit, then 2, 3...
    # The raw page view the visit starts with: with started_at, where re-sessionizing resumes.
    first_pageview_id = models.BigIntegerField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    pageviews = models.PositiveIntegerField()
    duration_seconds = models.PositiveIntegerField()
    entry_path = models.CharField(max_length=PATH_MAX_LENGTH)
    exit_path = models.CharField(max_length=PATH_MAX_LENGTH)
    # The visit's source and device: those of its first page view.
    referrer_host = models.CharField(max_length=HOST_MAX_LENGTH, blank=True, default="")
    utm_source = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    utm_medium = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    utm_campaign = models.CharField(max_length=UTM_MAX_LENGTH, blank=True, default="")
    browser = models.CharField(max_length=FAMILY_MAX_LENGTH, blank=True, default="")
    os = models.CharField(max_length=FAMILY_MAX_LENGTH, blank=True, default="")
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.OTHER)
    country = models.CharField(max_length=COUNTRY_MAX_LENGTH, blank=True, default="")
    # The PagePath ids of its page views in order, what journeys read (the raw rows may be
    # pruned). NULL until counted: visits stored before this column get it from the catch-up.
    pages = PageSequenceField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tracking_id", "number"], name="visit_summary_number"),
        ]
        indexes = [
            models.Index(fields=["started_at", "pageviews"], name="visit_summary_start"),
            # The busiest visits of a range: read from the top pageviews down.
            models.Index(fields=["pageviews", "started_at"], name="visit_summary_pages"),
            # Visitors of the visits that entered on a page, read from this index alone.
            models.Index(
                fields=["entry_path", "started_at", "tracking_id"], name="visit_summary_entry"
            ),
            # What the pages catch-up has left to do: empty once it has run.
            models.Index(
                fields=["id"], name="visit_summary_no_pages", condition=models.Q(pages__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tracking_id} visit {self.number} ({self.pageviews} pages)"

    @property
    def returning(self) -> bool:
        return self.number > 1


class PageHourly(models.Model):
    """Pageviews and distinct visitors of one path in one hour of page-view time."""

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


# The fields of VisitCounts that add up across hours, days and batches.
VISIT_MEASURES = ["visits", "pageviews", "bounces", "duration_seconds", "returning_visits"]


class VisitCounts(models.Model):
    """What the visit rollups count per dimension value; VisitHourly and VisitDaily add the hour
    or the day the visits started in.

    ``all`` carries the totals (value ""); ``pages`` buckets visits by their pageviews
    (1, 2, 3, 4-5, 6-10, 11-20, 21+); the others are the visit's entry and exit page, its
    referrer and UTM fields, its browser, OS and device, and its country. ``returning_visits``
    counts the visits whose visitor had an earlier visit.
    """

    class Dimension(models.TextChoices):
        ALL = "all", "All visits"
        ENTRY_PATH = "entry_path", "Entry page"
        EXIT_PATH = "exit_path", "Exit page"
        REFERRER = "referrer_host", "Referrer"
        UTM_SOURCE = "utm_source", "UTM source"
        UTM_MEDIUM = "utm_medium", "UTM medium"
        UTM_CAMPAIGN = "utm_campaign", "UTM campaign"
        BROWSER = "browser", "Browser"
        OS = "os", "Operating system"
        DEVICE = "device", "Device"
        COUNTRY = "country", "Country"
        PAGES = "pages", "Pages per visit"

    dimension = models.CharField(max_length=20, choices=Dimension.choices)
    value = models.CharField(max_length=PATH_MAX_LENGTH, blank=True, default="")
    visits = models.PositiveIntegerField()
    pageviews = models.PositiveIntegerField()
    bounces = models.PositiveIntegerField()
    duration_seconds = models.PositiveBigIntegerField()
    returning_visits = models.PositiveIntegerField()

    class Meta:
        abstract = True


class VisitHourly(VisitCounts):
    """Visits grouped by the hour they started and one dimension's value."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "dimension", "value"], name="visit_hourly_unique"
            ),
        ]
        indexes = [models.Index(fields=["dimension", "hour"], name="visit_hourly_dim")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.dimension}={self.value}: {self.visits}"


class PageDaily(models.Model):
    """PageHourly summed over one UTC day, so a month-long range reads 30 rows per path.

    ``sessions`` is the sum of the day's hourly distinct visitors, like a range of hours.
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


class VisitDaily(VisitCounts):
    """VisitHourly summed over one UTC day of visit starts."""

    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "dimension", "value"], name="visit_daily_unique"
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
                    "visits",
                    "pageviews",
                    "bounces",
                    "duration_seconds",
                    "returning_visits",
                ],
                name="visit_daily_totals",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.dimension}={self.value}: {self.visits}"


# How many visits back VisitorHourly looks: what the distinct visitors of a range and its
# visits-per-visitor histogram (1, 2, 3, 4-5, 6-10, 11+) need.
VISITOR_LAGS = [1, 2, 3, 4, 5, 6, 10, 11]


class VisitorCounts(models.Model):
    """Visits by the hour their visitor's ``lag``-th earlier visit started.

    Distinct visitors of any range [a, b) follow exactly: a visitor with m visits there has
    max(0, m - k) of them whose k-th earlier visit started at or after a, so the visitors with at
    least k visits are (those rows with lag k - 1) minus (those with lag k), lag 0 being every
    visit. Each range needs a few sums, never a distinct count over visits.
    """

    lag = models.PositiveSmallIntegerField()
    previous_hour = models.DateTimeField()
    visits = models.PositiveIntegerField()

    class Meta:
        abstract = True


class VisitorHourly(VisitorCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "lag", "previous_hour"], name="visitor_hourly_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} lag {self.lag} {self.previous_hour:%Y-%m-%d %H:00}"


class VisitorDaily(VisitorCounts):
    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "lag", "previous_hour"], name="visitor_daily_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} lag {self.lag} {self.previous_hour:%Y-%m-%d %H:00}"


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


class PageVisitorCounts(models.Model):
    """A path's hourly distinct visitors who had already viewed it in an earlier hour, by that
    hour (the latest such).

    The distinct visitors of a path over any range [a, b) follow exactly: the sum of its hourly
    distinct visitors (PageHourly.sessions) less these rows with previous_hour >= a, since each
    visitor then counts only in the first hour of the range in which it viewed the path. The
    earlier hour is looked up in the raw rows, so a view more than the raw retention after the
    previous one finds none.
    """

    path = models.CharField(max_length=PATH_MAX_LENGTH)
    previous_hour = models.DateTimeField()
    visitors = models.PositiveIntegerField()

    class Meta:
        abstract = True


class PageVisitorHourly(PageVisitorCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "path", "previous_hour"], name="page_visitor_hourly_unique"
            ),
        ]
        # Top pages read their few paths' rows alone (index-only on PostgreSQL).
        indexes = [
            models.Index(
                fields=["path", "hour", "previous_hour", "visitors"],
                name="page_visitor_hourly_path",
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.path} after {self.previous_hour:%Y-%m-%d %H:00}"


class PageVisitorDaily(PageVisitorCounts):
    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "path", "previous_hour"], name="page_visitor_daily_unique"
            ),
        ]
        indexes = [
            models.Index(
                fields=["path", "day", "previous_hour", "visitors"], name="page_visitor_daily_path"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.path} after {self.previous_hour:%Y-%m-%d %H:00}"


class CountryVisitorCounts(models.Model):
    """Visits whose visitor had an earlier visit from the same country, by the hour that visit
    (the latest such) started.

    The distinct visitors from a country over any range [a, b) follow exactly: its visits there
    (VisitHourly, dimension country) less these rows with previous_hour >= a, since each visitor
    then counts only with its first visit from that country in the range.
    """

    country = models.CharField(max_length=COUNTRY_MAX_LENGTH, blank=True, default="")
    previous_hour = models.DateTimeField()
    visitors = models.PositiveIntegerField()

    class Meta:
        abstract = True


class CountryVisitorHourly(CountryVisitorCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "country", "previous_hour"], name="country_visitor_hourly_unique"
            ),
        ]

    def __str__(self) -> str:
        after = f"{self.previous_hour:%Y-%m-%d %H:00}"
        return f"{self.hour:%Y-%m-%d %H:00} {self.country} after {after}"


class CountryVisitorDaily(CountryVisitorCounts):
    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "country", "previous_hour"], name="country_visitor_daily_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.country} after {self.previous_hour:%Y-%m-%d %H:00}"


EVENT_NAME_MAX_LENGTH = 64


class Event(models.Model):
    """One raw event (a counter: "signed up", "clicked the outbound link"), appended by the
    request path or the first-party script's endpoint and never updated.

    Like ``Visit``: the auto-increment id is aggregation's watermark, ``event_id`` makes a
    re-drain or a retried insert harmless. ``path`` is the page it happened on, so that goals
    and funnels can place it among the visitor's page views; ``props`` are a few short strings
    checked for personal data before they get here; ``revenue`` is in ``TRACKER_CURRENCY``.
    """

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True)
    tracking_id = models.UUIDField()
    occurred_at = models.DateTimeField()
    name = models.CharField(max_length=EVENT_NAME_MAX_LENGTH)
    path = models.CharField(max_length=PATH_MAX_LENGTH)
    props = models.JSONField(default=dict, blank=True)
    revenue = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)

    class Meta:
        # As few indexes as a raw visit has (each costs the append a B-tree insert); pruning
        # walks the primary key, whose order is the arrival order.
        indexes = [
            # Aggregation's probe (had this visitor this event in that hour already?) and a
            # visitor's timeline.
            models.Index(fields=["tracking_id", "name", "occurred_at"], name="event_visitor_name"),
            # The dashboard's props of one event in a range.
            models.Index(fields=["name", "occurred_at"], name="event_name_time"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.name}"


class EventCounts(models.Model):
    """An event name's occurrences and distinct visitors in one hour (or day) of event time.

    ``visitors`` counts each visitor once per hour; per day it is the sum of the day's hours,
    like ``PageDaily.sessions``. ``EventVisitorHourly`` turns those sums into the exact distinct
    visitors of any range.
    """

    name = models.CharField(max_length=EVENT_NAME_MAX_LENGTH)
    occurrences = models.PositiveIntegerField()
    visitors = models.PositiveIntegerField()

    class Meta:
        abstract = True


class EventHourly(EventCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "name"], name="event_hourly_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.name}: {self.occurrences}"


class EventDaily(EventCounts):
    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "name"], name="event_daily_unique")]
        # The events panel of a range reads this index alone.
        indexes = [
            models.Index(
                fields=["day", "name", "occurrences", "visitors"], name="event_daily_totals"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.name}: {self.occurrences}"


class EventVisitorCounts(models.Model):
    """An event name's hourly visitors who had it in an earlier hour too, by that hour (the
    latest such), as ``PageVisitorCounts`` for paths: the distinct visitors of the name over
    [a, b) are the sum of its hourly visitors less these rows with previous_hour >= a.
    """

    name = models.CharField(max_length=EVENT_NAME_MAX_LENGTH)
    previous_hour = models.DateTimeField()
    visitors = models.PositiveIntegerField()

    class Meta:
        abstract = True


class EventVisitorHourly(EventVisitorCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "name", "previous_hour"], name="event_visitor_hourly_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.name} after {self.previous_hour:%Y-%m-%d %H:00}"


class EventVisitorDaily(EventVisitorCounts):
    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "name", "previous_hour"], name="event_visitor_daily_unique"
            ),
        ]
        indexes = [
            models.Index(
                fields=["day", "previous_hour", "name", "visitors"], name="event_visitor_daily_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.name} after {self.previous_hour:%Y-%m-%d %H:00}"


GOAL_NAME_MAX_LENGTH = 100
PROP_MAX_LENGTH = 100


class Goal(models.Model):
    """What counts as a conversion: a page-view pattern (``*`` matches any run of characters)
    or an event name, optionally with one property's value (events only).

    Goals are configuration, edited by staff; their hits are derived (``GoalHit``).
    """

    class Kind(models.TextChoices):
        PAGE = "page", "Page view"
        EVENT = "event", "Event"

    name = models.CharField(max_length=GOAL_NAME_MAX_LENGTH, unique=True)
    kind = models.CharField(max_length=5, choices=Kind.choices)
    # A path pattern for page goals ("/signup/thanks/", "/blog/*"), an event name for event goals.
    match = models.CharField(max_length=PATH_MAX_LENGTH)
    prop_key = models.CharField(max_length=PROP_MAX_LENGTH, blank=True, default="")
    prop_value = models.CharField(max_length=PROP_MAX_LENGTH, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class GoalHit(models.Model):
    """One raw page view or event that reached a goal, kept after the raw row is pruned.

    The per-visit layer's "goals reached": anonymous (the visitor's random id, a time, an
    amount), derived from the raw rows and rebuilt from them when a goal changes. ``raw_id`` is
    the page view's or the event's id (the goal's kind says which), so a re-run adds nothing.
    """

    id = models.BigAutoField(primary_key=True)
    goal = models.ForeignKey(Goal, on_delete=models.CASCADE, related_name="hits")
    raw_id = models.BigIntegerField()
    tracking_id = models.UUIDField()
    reached_at = models.DateTimeField()
    revenue = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    # The visit the hit belongs to (its visitor's last visit started at or before it, the first
    # for an earlier hit), kept by aggregation; NULL until the goal rollups count the hit.
    visit_number = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["goal", "raw_id"], name="goal_hit_unique"),
        ]
        indexes = [
            models.Index(fields=["goal", "reached_at"], name="goal_hit_time"),
            models.Index(fields=["tracking_id", "reached_at"], name="goal_hit_visitor"),
            # The hits the goal rollups have yet to count (new, rebuilt, or from before them).
            models.Index(
                fields=["tracking_id"],
                condition=models.Q(visit_number__isnull=True),
                name="goal_hit_uncounted",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reached_at:%Y-%m-%d %H:%M:%S} {self.goal_id}"


class GoalCounts(models.Model):
    """A goal's hits in one hour (or UTC day) of hit time, as ``EventCounts`` for event names.

    ``visitors`` counts each visitor once per hour and ``visits`` each visit once per hour (a
    day's are the sums of its hours); ``GoalRepeatCounts`` turns those sums into the exact
    distinct visitors and converted visits of any range. Revenue is summed in ten-thousandths of
    the currency, exact on every database; ``revenue_hits`` tells "no revenue" from zero.
    """

    goal = models.ForeignKey(Goal, on_delete=models.CASCADE, related_name="+")
    hits = models.PositiveIntegerField()
    visitors = models.PositiveIntegerField()
    visits = models.PositiveIntegerField()
    revenue_hits = models.PositiveIntegerField()
    revenue = models.BigIntegerField()

    class Meta:
        abstract = True


class GoalHourly(GoalCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "goal"], name="goal_hourly_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} goal {self.goal_id}: {self.hits}"


class GoalDaily(GoalCounts):
    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "goal"], name="goal_daily_unique")]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} goal {self.goal_id}: {self.hits}"


class GoalRepeatCounts(models.Model):
    """A goal's hourly visitors (visits) that had a hit in an earlier hour too, by that hour
    (the latest such): its distinct visitors (converted visits) over [a, b) are the sum of its
    hourly ones less these rows with previous_hour >= a. Within a visit the earlier hour is the
    visitor's latest too, so ``visitors`` is zero only when ``visits`` is.
    """

    goal = models.ForeignKey(Goal, on_delete=models.CASCADE, related_name="+")
    previous_hour = models.DateTimeField()
    visitors = models.PositiveIntegerField()
    visits = models.PositiveIntegerField()

    class Meta:
        abstract = True


class GoalRepeatHourly(GoalRepeatCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "goal", "previous_hour"], name="goal_repeat_hourly_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} goal {self.goal_id} after {self.previous_hour}"


class GoalRepeatDaily(GoalRepeatCounts):
    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "goal", "previous_hour"], name="goal_repeat_daily_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} goal {self.goal_id} after {self.previous_hour}"


FUNNEL_MIN_STEPS = 2
FUNNEL_MAX_STEPS = 8


class Funnel(models.Model):
    """2-8 ordered goals: a visitor passes a step on reaching it after the previous step, in
    the same visit, or in any later visit of the same visitor when ``across_visits`` is set."""

    name = models.CharField(max_length=GOAL_NAME_MAX_LENGTH, unique=True)
    across_visits = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # The definition (``tracker.funnel_runs.funnel_definition``) its FunnelRun rows were built
    # for: an edit that did not rebuild them (a bulk update) leaves them to the next catch-up.
    runs_definition = models.CharField(max_length=100, blank=True, default="", editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FunnelStep(models.Model):
    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()  # 1, 2, ... in the order a visitor takes them
    goal = models.ForeignKey(Goal, on_delete=models.PROTECT, related_name="funnel_steps")

    class Meta:
        ordering = ["funnel", "position"]
        constraints = [
            models.UniqueConstraint(fields=["funnel", "position"], name="funnel_step_position"),
        ]

    def __str__(self) -> str:
        return f"{self.funnel_id} #{self.position}: {self.goal_id}"


class FunnelRun(models.Model):
    """One run of a funnel: a visit with a step-1 hit, from its first one (``t1``) through the
    earliest hit of each next step strictly after the previous (same visit, or any later one
    with ``across_visits``); ``depth`` steps passed, later times NULL.

    Derived from GoalHit (``tracker.funnel_runs``), kept by aggregation for the visitors whose
    hits or visits changed; a run counts in the range its ``t1`` falls in.
    """

    id = models.BigAutoField(primary_key=True)
    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="+")
    tracking_id = models.UUIDField()
    visit_number = models.PositiveIntegerField()
    depth = models.PositiveSmallIntegerField()
    t1 = models.DateTimeField()
    t2 = models.DateTimeField(null=True)
    t3 = models.DateTimeField(null=True)
    t4 = models.DateTimeField(null=True)
    t5 = models.DateTimeField(null=True)
    t6 = models.DateTimeField(null=True)
    t7 = models.DateTimeField(null=True)
    t8 = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["funnel", "tracking_id", "visit_number"], name="funnel_run_unique"
            ),
        ]
        indexes = [
            # Step 1's distinct visitors of a range, read from the index alone.
            models.Index(fields=["funnel", "t1", "tracking_id"], name="funnel_run_entry"),
            # The runs that passed step 2: the only ones the later steps read.
            models.Index(
                fields=["funnel", "t1"],
                condition=models.Q(depth__gte=2),
                name="funnel_run_deep",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.t1:%Y-%m-%d %H:%M:%S} funnel {self.funnel_id}: {self.depth}"


class FunnelCounts(models.Model):
    """A funnel's visitors with a run entering (its step-1 hit) in one hour, each counted once
    per hour (a UTC day's are the sums of its hours); ``FunnelRepeatCounts`` turns those sums
    into the exact distinct visitors at step 1 of any range, as GoalRepeatCounts does."""

    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="+")
    visitors = models.PositiveIntegerField()

    class Meta:
        abstract = True


class FunnelHourly(FunnelCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "funnel"], name="funnel_hourly_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} funnel {self.funnel_id}: {self.visitors}"


class FunnelDaily(FunnelCounts):
    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "funnel"], name="funnel_daily_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} funnel {self.funnel_id}: {self.visitors}"


class FunnelRepeatCounts(models.Model):
    """A funnel's hourly entering visitors that entered in an earlier hour too, by that hour
    (the latest such): the range's distinct visitors at step 1 are the sum of the hourly ones
    less these rows with previous_hour in the range."""

    funnel = models.ForeignKey(Funnel, on_delete=models.CASCADE, related_name="+")
    previous_hour = models.DateTimeField()
    visitors = models.PositiveIntegerField()

    class Meta:
        abstract = True


class FunnelRepeatHourly(FunnelRepeatCounts):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "funnel", "previous_hour"], name="funnel_repeat_hourly_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} funnel {self.funnel_id} after {self.previous_hour}"


class FunnelRepeatDaily(FunnelRepeatCounts):
    day = models.DateTimeField()  # the UTC midnight starting the day

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "funnel", "previous_hour"], name="funnel_repeat_daily_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} funnel {self.funnel_id} after {self.previous_hour}"
