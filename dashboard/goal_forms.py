"""Validate a goal posted from the Goals page: bad input is a 400 with the form's messages."""

from __future__ import annotations

from django import forms

from tracker.goals import goal_definition_errors
from tracker.models import GOAL_NAME_MAX_LENGTH, PATH_MAX_LENGTH, PROP_MAX_LENGTH, Goal


class GoalForm(forms.Form):
    name = forms.CharField(min_length=1, max_length=GOAL_NAME_MAX_LENGTH, strip=True)
    kind = forms.ChoiceField(choices=Goal.Kind.choices)
    match = forms.CharField(max_length=PATH_MAX_LENGTH, strip=True)
    prop_key = forms.CharField(required=False, max_length=PROP_MAX_LENGTH, strip=True)
    prop_value = forms.CharField(required=False, max_length=PROP_MAX_LENGTH, strip=True)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if not name.isprintable():
            raise forms.ValidationError("The name must not contain control characters.")
        if Goal.objects.filter(name=name).exists():
            raise forms.ValidationError("A goal with this name already exists.")
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        if "kind" not in cleaned or "match" not in cleaned:
            return cleaned
        errors = goal_definition_errors(
            kind=cleaned["kind"],
            match=cleaned["match"],
            prop_key=cleaned.get("prop_key", ""),
            prop_value=cleaned.get("prop_value", ""),
        )
        for field, messages in errors.items():
            for message in messages:
                self.add_error(field, message)
        return cleaned
