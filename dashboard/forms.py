"""Validate the dashboard's query string: a range or a custom start/end, a path filter, a page.

Every dashboard URL takes the same parameters; hostile values are ordinary traffic, so anything
that does not parse becomes a form error (a 400 with its message), never an exception.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.utils import timezone

from dashboard.filters import (
    FORM_DIMENSION,
    IS,
    NO_FILTERS,
    PAGE_NUMBER,
    Filter,
    FilterError,
    Filters,
    filters_add,
    filters_pairs,
    filters_parse,
    filters_remove,
)
from dashboard.models import ReportKind
from tracker.models import PATH_MAX_LENGTH

RANGE_CHOICES = [
    ("today", "Today"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
]
SHORT_LABELS = {"today": "Today", "24h": "24h", "7d": "7 days", "30d": "30 days", "90d": "90 days"}
RANGE_DAYS = {"7d": 7, "30d": 30, "90d": 90}
DEFAULT_RANGE = "7d"
MAX_SPAN_DAYS = 3 * 366
MAX_PAGE = 10_000
HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Period:
    """A half-open interval [start, end) aligned to whole hours, as the rollups are."""

    start: dt.datetime
    end: dt.datetime
    range_key: str  # "today", "24h", ... or "custom"
    label: str

    @property
    def span(self) -> dt.timedelta:
        return self.end - self.start

    @property
    def last_moment(self) -> dt.datetime:
        """The last instant inside the period, for display (the end itself is excluded)."""
        return self.end - dt.timedelta(microseconds=1)

    @property
    def previous(self) -> Period:
        """The period of the same length just before this one: the baseline of each change."""
        return Period(self.start - self.span, self.start, "previous", "previous period")

    @property
    def hourly(self) -> bool:
        """Charts go per hour up to two days, per day beyond."""
        return self.span <= dt.timedelta(days=2)


def floor_hour(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def local_midnight(day: dt.date) -> dt.datetime:
    """Midnight of a calendar day in the site's time zone, as an aware datetime."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def form_error_message(form: forms.Form) -> str:
    """All of a form's errors in one line, naming the parameter each one is about."""
    parts = []
    for field, messages in form.errors.items():
        prefix = "" if field == "__all__" else f"{field}: "
        parts.extend(f"{prefix}{message}" for message in messages)
    return " ".join(parts)


class DashboardFilterForm(forms.Form):
    range = forms.ChoiceField(choices=RANGE_CHOICES, required=False)
    start = forms.DateField(required=False, input_formats=["%Y-%m-%d"])
    end = forms.DateField(required=False, input_formats=["%Y-%m-%d"])
    path = forms.CharField(required=False, max_length=PATH_MAX_LENGTH, strip=True)
    page = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE)
    # "1" draws the previous period beside the current one on the time series.
    compare = forms.ChoiceField(choices=[("1", "compare")], required=False)

    def __init__(self, data=None, *args, **kwargs):
        # page= holds the table's page number and the "page visited" filter: the field sees the
        # numbers only, filters_parse the rest (see dashboard.filters.PAGE_NUMBER).
        self.query = data if data is not None else {}
        if data is not None and hasattr(data, "getlist") and "page" in data:
            data = data.copy()
            data.setlist(
                "page", [value for value in data.getlist("page") if PAGE_NUMBER.fullmatch(value)]
            )
        super().__init__(data, *args, **kwargs)

    def clean_path(self) -> str:
        path = self.cleaned_data["path"]
        if path and any(ord(char) < 32 for char in path):
            raise forms.ValidationError("The path must not contain control characters.")
        return path

    def clean(self) -> dict:
        cleaned = super().clean()
        try:
            cleaned["filters"] = filters_parse(self.query)
        except FilterError as error:
            raise forms.ValidationError(str(error)) from None
        if cleaned["filters"] and cleaned.get("path"):
            # Beside other filters the old path= is the entry page (alone it keeps its rollup
            # meaning: see queries); written back as entry=, so chips and links show it so.
            cleaned["filters"] = filters_add(
                cleaned["filters"], Filter("entry", IS, cleaned["path"])
            )
            cleaned["path"] = ""
        if self.errors:
            return cleaned
        start, end = cleaned.get("start"), cleaned.get("end")
        if cleaned.get("range") and (start or end):
            raise forms.ValidationError("Give either range= or start= and end=, not both.")
        if bool(start) != bool(end):
            raise forms.ValidationError("A custom range needs both start= and end= (YYYY-MM-DD).")
        if start and end:
            if end < start:
                raise forms.ValidationError("end= must be on or after start=.")
            if (end - start).days + 1 > MAX_SPAN_DAYS:
                raise forms.ValidationError(
                    f"A custom range may span at most {MAX_SPAN_DAYS} days."
                )
            if start.year < 2000 or end.year > 2999:
                raise forms.ValidationError(
                    "start= and end= must lie between the years 2000 and 2999."
                )
        return cleaned

    def period(self, *, now: dt.datetime) -> Period:
        """Resolve the validated parameters into the hour-aligned period they mean."""
        start, end = self.cleaned_data.get("start"), self.cleaned_data.get("end")
        if start and end:
            label = f"{start:%d %b %Y} to {end:%d %b %Y}"
            return Period(
                local_midnight(start), local_midnight(end + dt.timedelta(days=1)), "custom", label
            )
        key = self.cleaned_data.get("range") or DEFAULT_RANGE
        label = dict(RANGE_CHOICES)[key]
        current_hour_end = floor_hour(now) + HOUR
        if key == "24h":
            return Period(current_hour_end - 24 * HOUR, current_hour_end, key, label)
        today = timezone.localdate(now)
        if key == "today":
            return Period(local_midnight(today), current_hour_end, key, label)
        first_day = today - dt.timedelta(days=RANGE_DAYS[key] - 1)
        tomorrow = today + dt.timedelta(days=1)
        return Period(local_midnight(first_day), local_midnight(tomorrow), key, label)

    @property
    def filters(self) -> Filters:
        return self.cleaned_data.get("filters", NO_FILTERS)

    @property
    def from_filter_form(self) -> bool:
        """Sent by the "add a filter" form: its URL should be rewritten with the filter's name."""
        return bool(self.query.get(FORM_DIMENSION))

    def query_string(self, *, filters: Filters | None = None, **changes: object) -> str:
        """The current valid parameters as a query string, with some replaced or dropped (None);
        ``filters`` replaces the filters."""
        params = {
            name: self.cleaned_data.get(name)
            for name in ("range", "start", "end", "path", "compare", "page")
        }
        params.update(changes)
        if changes.get("range"):
            params["start"] = params["end"] = None
        if changes.get("start"):
            params["range"] = None
        pairs = [(name, str(value)) for name, value in params.items() if value not in (None, "")]
        chosen = self.cleaned_data.get("filters", NO_FILTERS) if filters is None else filters
        return urlencode(pairs + filters_pairs(chosen))

    def filter_links(self) -> list[dict]:
        """The active filters as chips: each one's label, value and the query without it."""
        current = self.cleaned_data.get("filters", NO_FILTERS)
        return [
            {
                "filter": item,
                "remove_query": self.query_string(filters=filters_remove(current, item), page=None),
            }
            for item in current
        ]

    def query_with(self, item: Filter) -> str:
        """The query string with one more filter (a click on a row), back on page one."""
        current = self.cleaned_data.get("filters", NO_FILTERS)
        return self.query_string(filters=filters_add(current, item), page=None)

    def range_links(self, period: Period) -> list[dict]:
        """The range selector's links, keeping the path filter and restarting at page one."""
        return [
            {
                "key": key,
                "label": SHORT_LABELS[key],
                "title": label,
                "query": self.query_string(range=key, page=None),
                "current": period.range_key == key,
            }
            for key, label in RANGE_CHOICES
        ]

    def error_message(self) -> str:
        return form_error_message(self)


class ReportSettingsForm(forms.Form):
    """The email reports a staff user wants, and the address they go to."""

    email = forms.EmailField(required=False, max_length=254)
    kinds = forms.MultipleChoiceField(
        choices=ReportKind.choices, required=False, widget=forms.CheckboxSelectMultiple
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("kinds") and not cleaned.get("email"):
            raise forms.ValidationError("Reports need an email address to go to.")
        return cleaned


SHARED_LINK_EXPIRY_DAYS = [("", "Never"), ("1", "1 day"), ("7", "7 days"), ("30", "30 days")]


class SharedLinkForm(forms.Form):
    label = forms.CharField(required=False, max_length=100, strip=True)
    expires_in_days = forms.TypedChoiceField(
        choices=SHARED_LINK_EXPIRY_DAYS, required=False, coerce=int, empty_value=None
    )
    allow_exports = forms.BooleanField(required=False)

    def expires_at(self, *, now: dt.datetime) -> dt.datetime | None:
        days = self.cleaned_data["expires_in_days"]
        return now + dt.timedelta(days=days) if days else None
