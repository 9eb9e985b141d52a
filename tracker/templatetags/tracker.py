"""``{% load tracker %}{% tracker_script %}``: the optional first-party events script."""

from __future__ import annotations

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def tracker_script() -> str:
    """A deferred script tag for static/tracker/events.js, told where the endpoint is."""
    return format_html(
        '<script src="{}" data-endpoint="{}" defer></script>',
        static("tracker/events.js"),
        reverse("event-collect"),
    )
