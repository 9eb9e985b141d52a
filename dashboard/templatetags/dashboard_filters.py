"""Template helpers for filters: the query string of a click on a panel's row."""

from __future__ import annotations

from django import template

from dashboard.filters import DIMENSION_OF_FIELD, DIMENSIONS, IS, FilterError, filter_clean

register = template.Library()


@register.simple_tag
def filter_query(form, dimension: str, value: object) -> str:
    """The current query with ``dimension`` (a filter name or a panel's column) is ``value``;
    the unchanged query where the value cannot be a filter (too long for it, say)."""
    name = DIMENSION_OF_FIELD.get(dimension, dimension)
    try:
        item = filter_clean(dimension=name, operator=IS, value=str(value))
    except FilterError:
        return form.query_string(page=None)
    return form.query_with(item)


@register.simple_tag
def filter_dimensions() -> list[tuple[str, str]]:
    return [(name, spec.label) for name, spec in DIMENSIONS.items()]
