"""Dashboard filters: parse them from the query string, write them back, apply them to visits.

A filter is a dimension, an operator and a value: ``browser=Chrome`` (is),
``browser__not=Chrome`` (is not), ``referrer__contains=goo`` (contains, case-insensitive; text
dimensions only). Filters combine with AND. Values come from visitors (paths, referrers,
campaigns), so a value that does not fit the dimension is a message for a 400, never an
exception; a well-formed value that nothing has (an unknown goal name) simply matches nothing.

A visit passes when its VisitSummary row matches (entry, exit, source, browser, OS, device,
country), for ``page`` when its list of pages has that path (so it outlives the raw rows), and
for ``goal`` / ``event`` when a goal hit / event of that name belongs to it (the visit of its
visitor that started last at or before it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from tracker.models import (
    COUNTRY_MAX_LENGTH,
    EVENT_NAME_MAX_LENGTH,
    FAMILY_MAX_LENGTH,
    GOAL_NAME_MAX_LENGTH,
    HOST_MAX_LENGTH,
    PATH_MAX_LENGTH,
    UTM_MAX_LENGTH,
    Device,
    Event,
    GoalHit,
    PagePath,
    VisitSummary,
)

IS, NOT, CONTAINS = "is", "not", "contains"
OPERATORS = {IS: "is", NOT: "is not", CONTAINS: "contains"}
MAX_FILTERS = 10
# The "add a filter" form's fields (a GET form cannot name a parameter by a select's value).
FORM_DIMENSION, FORM_OPERATOR, FORM_VALUE = "_dimension", "_operator", "_value"
# ``page=`` is also the visitors table's page number (older than the filter): a whole number
# there is that, anything else the "page visited" filter (paths start with "/").
PAGE_NUMBER = re.compile(r"\s*[+-]?\d*\s*")
COUNTRY_CODE = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class DimensionSpec:
    label: str
    max_length: int
    field: str | None  # the VisitSummary column; None for page, goal and event (an EXISTS)
    text: bool = True  # "contains" allowed


DIMENSIONS: dict[str, DimensionSpec] = {
    "entry": DimensionSpec("Entry page", PATH_MAX_LENGTH, "entry_path"),
    "exit": DimensionSpec("Exit page", PATH_MAX_LENGTH, "exit_path"),
    "page": DimensionSpec("Page", PATH_MAX_LENGTH, None),
    "referrer": DimensionSpec("Referrer", HOST_MAX_LENGTH, "referrer_host"),
    "utm_source": DimensionSpec("UTM source", UTM_MAX_LENGTH, "utm_source"),
    "utm_medium": DimensionSpec("UTM medium", UTM_MAX_LENGTH, "utm_medium"),
    "utm_campaign": DimensionSpec("UTM campaign", UTM_MAX_LENGTH, "utm_campaign"),
    "browser": DimensionSpec("Browser", FAMILY_MAX_LENGTH, "browser"),
    "os": DimensionSpec("OS", FAMILY_MAX_LENGTH, "os"),
    "device": DimensionSpec("Device", 10, "device", text=False),
    "country": DimensionSpec("Country", COUNTRY_MAX_LENGTH, "country", text=False),
    "goal": DimensionSpec("Goal", GOAL_NAME_MAX_LENGTH, None, text=False),
    "event": DimensionSpec("Event", EVENT_NAME_MAX_LENGTH, None, text=False),
}
# The dimension a panel's rows are values of (VisitSummary's column names, as the rollups and
# dimension_breakdown name them), for a click on a row.
DIMENSION_OF_FIELD = {spec.field: name for name, spec in DIMENSIONS.items() if spec.field}


class FilterError(ValueError):
    """A filter parameter that cannot be applied; its message names the parameter."""


@dataclass(frozen=True)
class Filter:
    dimension: str
    operator: str
    value: str

    @property
    def parameter(self) -> str:
        return self.dimension if self.operator == IS else f"{self.dimension}__{self.operator}"

    @property
    def label(self) -> str:
        return f"{DIMENSIONS[self.dimension].label} {OPERATORS[self.operator]}"


Filters = tuple[Filter, ...]
NO_FILTERS: Filters = ()


def _split(name: str) -> tuple[str, str] | None:
    """(dimension, operator) of a parameter name that is filter-shaped, else None."""
    dimension, _, operator = name.partition("__")
    if dimension in DIMENSIONS:
        return dimension, operator or IS
    if operator:  # something__op: meant as a filter, on no dimension we know
        raise FilterError(f"{name[:60]!r} is not a filter (dimensions: {', '.join(DIMENSIONS)}).")
    return None


def filter_clean(*, dimension: str, operator: str, value: str) -> Filter:
    """Return the filter, or raise FilterError saying what is wrong with it."""
    spec = DIMENSIONS.get(dimension)
    if spec is None:
        raise FilterError(f"{dimension[:60]!r} is not a filter dimension.")
    name = dimension if operator == IS else f"{dimension}__{operator}"
    if operator not in OPERATORS:
        raise FilterError(f"{name[:80]}: the operator must be is, __not or __contains.")
    if operator == CONTAINS and not spec.text:
        raise FilterError(f"{name}: {dimension} takes is or __not, not __contains.")
    value = value.strip()
    if dimension == "device" and value not in Device.values:
        raise FilterError(f"{name}: the device is one of {', '.join(Device.values)}.")
    if dimension == "country":
        value = value.upper()
        if value and not COUNTRY_CODE.fullmatch(value):
            raise FilterError(f"{name}: a country is a two-letter ISO code such as DE.")
    if len(value) > spec.max_length:
        raise FilterError(f"{name}: at most {spec.max_length} characters.")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise FilterError(f"{name}: the value must not contain control characters.")
    if operator == CONTAINS and not value:
        raise FilterError(f"{name}: give some text to look for.")
    if dimension in ("goal", "event") and not value:
        raise FilterError(f"{name}: give a {dimension} name.")
    return Filter(dimension, operator, value)


def filters_parse(data: Mapping) -> Filters:
    """The filters of a query string (a QueryDict), in a stable order; raise FilterError.

    Names that are no filter and carry no ``__`` are left to others (range=, page=, ...).
    """
    found = []
    keys = data.keys()
    for name in keys:
        split = _split(name)
        if split is None:
            continue
        values = data.getlist(name) if hasattr(data, "getlist") else [data[name]]
        if name == "page":
            values = [value for value in values if not PAGE_NUMBER.fullmatch(value)]
        for value in values:
            found.append(filter_clean(dimension=split[0], operator=split[1], value=value))
    if data.get(FORM_DIMENSION):
        operator = (data.get(FORM_OPERATOR) or "").removeprefix("__") or IS
        value = data.get(FORM_VALUE) or ""
        found.append(filter_clean(dimension=data[FORM_DIMENSION], operator=operator, value=value))
    if len(found) > MAX_FILTERS:
        raise FilterError(f"At most {MAX_FILTERS} filters at once.")
    order = list(DIMENSIONS)
    unique = dict.fromkeys(
        sorted(found, key=lambda f: (order.index(f.dimension), f.operator, f.value))
    )
    return tuple(unique)


def filters_pairs(filters: Filters) -> list[tuple[str, str]]:
    """The filters as query-string pairs (the parameter names above)."""
    return [(item.parameter, item.value) for item in filters]


def filters_add(filters: Filters, item: Filter) -> Filters:
    """The filters with ``item``; a click on a row replaces an "is" of the same dimension."""
    kept = [
        f
        for f in filters
        if not (item.operator == IS == f.operator and f.dimension == item.dimension)
    ]
    return tuple(dict.fromkeys([*kept, item]))


def filters_remove(filters: Filters, item: Filter) -> Filters:
    return tuple(f for f in filters if f != item)


def next_visit_start() -> Coalesce:
    """The start of the visitor's next visit (far future for the last one): where a visit's
    events and goal hits stop."""
    following = VisitSummary.objects.filter(
        tracking_id=OuterRef("tracking_id"), number=OuterRef("number") + 1
    ).values("started_at")[:1]
    return Coalesce(Subquery(following), dt.datetime(9999, 1, 1, tzinfo=dt.UTC))


def _condition(item: Filter) -> Q | Exists:
    spec = DIMENSIONS[item.dimension]
    if spec.field:
        lookup = "icontains" if item.operator == CONTAINS else "exact"
        return Q(**{f"{spec.field}__{lookup}": item.value})
    if item.dimension == "page":
        lookup = "path__icontains" if item.operator == CONTAINS else "path"
        return Q(pages__lists_any_of=PagePath.objects.filter(**{lookup: item.value}).values("id"))
    if item.dimension == "goal":
        return Exists(
            GoalHit.objects.filter(
                goal__name=item.value,
                tracking_id=OuterRef("tracking_id"),
                reached_at__gte=OuterRef("started_at"),
                reached_at__lt=OuterRef("next_started_at"),
            )
        )
    return Exists(
        Event.objects.filter(
            name=item.value,
            tracking_id=OuterRef("tracking_id"),
            occurred_at__gte=OuterRef("started_at"),
            occurred_at__lt=OuterRef("next_started_at"),
        )
    )


def visits_filtered(
    *, filters: Filters, start: dt.datetime, end: dt.datetime
) -> QuerySet[VisitSummary]:
    """The visits started in [start, end) that pass every filter."""
    rows = VisitSummary.objects.filter(started_at__gte=start, started_at__lt=end)
    if any(item.dimension in ("goal", "event") for item in filters):
        rows = rows.annotate(next_started_at=next_visit_start())
    for item in filters:
        condition = _condition(item)
        rows = rows.filter(~condition if item.operator == NOT else condition)
    return rows
