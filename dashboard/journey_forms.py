"""Validate the Journeys view's own parameters: ``from=<path>`` or ``to=<path>`` and ``steps=``.

The range comes from DashboardFilterForm, as on every dashboard URL.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms

from dashboard.forms import form_error_message
from dashboard.journeys import STEPS_DEFAULT, STEPS_MAX, STEPS_MIN, Direction
from tracker.models import PATH_MAX_LENGTH


def _page_field() -> forms.CharField:
    return forms.CharField(required=False, max_length=PATH_MAX_LENGTH, strip=True)


class JourneyForm(forms.Form):
    steps = forms.IntegerField(
        required=False,
        min_value=STEPS_MIN,
        max_value=STEPS_MAX,
        error_messages={"invalid": f"Give a whole number from {STEPS_MIN} to {STEPS_MAX}."},
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword: these fields are added by name.
        self.fields[Direction.FORWARD.value] = _page_field()
        self.fields[Direction.BACKWARD.value] = _page_field()

    def clean(self) -> dict:
        cleaned = super().clean()
        for name in (Direction.FORWARD.value, Direction.BACKWARD.value):
            if any(ord(char) < 32 for char in cleaned.get(name) or ""):
                self.add_error(name, "The path must not contain control characters.")
        if cleaned.get(Direction.FORWARD.value) and cleaned.get(Direction.BACKWARD.value):
            raise forms.ValidationError("Give either from= or to=, not both.")
        return cleaned

    @property
    def direction(self) -> Direction:
        return Direction.BACKWARD if self.cleaned_data.get("to") else Direction.FORWARD

    @property
    def path(self) -> str:
        """The chosen page; "" means the range's top entry page (forward)."""
        return self.cleaned_data.get(self.direction.value) or ""

    @property
    def step_count(self) -> int:
        return self.cleaned_data.get("steps") or STEPS_DEFAULT

    def query_string(self, **changes: object) -> str:
        params = {
            "from": self.cleaned_data.get("from"),
            "to": self.cleaned_data.get("to"),
            "steps": self.cleaned_data.get("steps"),
        }
        params.update(changes)
        return urlencode([(name, str(value)) for name, value in params.items() if value])

    def error_message(self) -> str:
        return form_error_message(self)
