"""Formatting filters for the dashboard: durations, shares, changes and empty dimension values."""

from __future__ import annotations

from django import template

from dashboard import charts
from tracker.countries import country_label

register = template.Library()

EMPTY_LABELS = {
    "referrer_host": "(direct)",
    "utm_source": "(none)",
    "utm_medium": "(none)",
    "utm_campaign": "(none)",
}


@register.filter
def duration(seconds: float | None) -> str:
    """1h 02m, 3m 07s, 12s; an em dash when unknown."""
    if seconds is None:
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


@register.filter
def number(value: float | None) -> str:
    """Thousands separated, one decimal for fractions; an em dash when unknown."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


@register.filter
def percent(ratio: float | None, digits: int = 0) -> str:
    if ratio is None:
        return "—"
    return f"{ratio * 100:.{int(digits)}f}%"


@register.filter
def share(part: int | None, whole: int | None) -> float:
    """A bar width in percent for inline table bars (0 when there is no whole)."""
    if not part or not whole:
        return 0.0
    return round(min(100.0, part * 100 / whole), 1)


@register.filter
def change_text(change: float | None) -> str:
    """Signed percent change against the previous period; "n/a" when there is no baseline."""
    if change is None:
        return "n/a"
    if abs(change) < 0.005:
        return "±0%"
    sign = "+" if change > 0 else "\N{MINUS SIGN}"
    return f"{sign}{abs(change) * 100:.0f}%"


@register.filter
def change_class(change: float | None, lower_is_better: bool = False) -> str:
    if change is None or abs(change) < 0.005:
        return "flat"
    better = change < 0 if lower_is_better else change > 0
    return "good" if better else "bad"


@register.filter
def dimension_value(value: str, dimension: str) -> str:
    """Empty values are real (direct traffic, no UTM tag): name them instead of leaving a gap."""
    if value:
        return value
    return EMPTY_LABELS.get(dimension, "(unknown)")


@register.filter
def country(code: str) -> str:
    """A country's flag and name; "(unknown)" for a private or unlisted address."""
    return country_label(code) if code else "(unknown)"


@register.filter
def source(row: dict) -> str:
    """Where a visit (or a visitor's first visit) came from: its referrer, then any UTM tags."""
    referrer = dimension_value(row.get("referrer_host", ""), "referrer_host")
    tags = [row.get(field, "") for field in ("utm_source", "utm_medium", "utm_campaign")]
    if not any(tags):
        return referrer
    return f"{referrer} · " + " / ".join(tag or "\N{EN DASH}" for tag in tags)


@register.filter
def minutes(seconds: int) -> str:
    """A setting in seconds as people say it: "30 minutes", or "90 seconds" when not whole."""
    if seconds % 60:
        return f"{seconds} seconds"
    count = seconds // 60
    return "1 minute" if count == 1 else f"{count} minutes"


@register.filter
def short_id(tracking_id) -> str:
    return charts.short_id(tracking_id)


@register.filter
def lookup(mapping: dict, key: str):
    return mapping.get(key) if mapping else None
