"""The write side. ``tracker.record_event(request, name, *, props=None, revenue=None)`` is the
site code's way to count what a visitor did (see ``tracker.events``)."""

from __future__ import annotations


def __getattr__(name: str):
    # Resolved on first use: importing tracker.events at package import would load the models
    # before Django's app registry is ready.
    if name == "record_event":
        from tracker.events import record_event

        return record_event
    raise AttributeError(f"module 'tracker' has no attribute {name!r}")
