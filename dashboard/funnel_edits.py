"""Creating and deleting funnels from the dashboard's funnels page (the admin does the same).

A funnel is 2-8 goals in order; its steps are numbered 1..n in the order chosen.
"""

from __future__ import annotations

from django import forms
from django.db import transaction

from tracker.funnel_runs import funnel_runs_rebuild_later
from tracker.models import (
    FUNNEL_MAX_STEPS,
    FUNNEL_MIN_STEPS,
    GOAL_NAME_MAX_LENGTH,
    Funnel,
    FunnelStep,
    Goal,
)


def steps_validate(goals: list[Goal]) -> None:
    """Raise ValidationError unless there are 2-8 steps (the admin's check too)."""
    if not FUNNEL_MIN_STEPS <= len(goals) <= FUNNEL_MAX_STEPS:
        raise forms.ValidationError(
            f"A funnel has {FUNNEL_MIN_STEPS} to {FUNNEL_MAX_STEPS} steps; {len(goals)} chosen."
        )


class FunnelForm(forms.Form):
    """Name, whether steps may come in later visits, and up to eight goals (blanks skipped)."""

    name = forms.CharField(max_length=GOAL_NAME_MAX_LENGTH, strip=True)
    across_visits = forms.BooleanField(required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        goals = Goal.objects.order_by("name")
        for number in range(1, FUNNEL_MAX_STEPS + 1):
            self.fields[f"step_{number}"] = forms.ModelChoiceField(
                queryset=goals, required=False, label=f"Step {number}"
            )

    def step_fields(self) -> list[forms.BoundField]:
        return [self[f"step_{number}"] for number in range(1, FUNNEL_MAX_STEPS + 1)]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if Funnel.objects.filter(name=name).exists():
            raise forms.ValidationError("A funnel with this name exists already.")
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        goals = [
            cleaned[f"step_{number}"]
            for number in range(1, FUNNEL_MAX_STEPS + 1)
            if cleaned.get(f"step_{number}") is not None
        ]
        if not any(f"step_{number}" in self.errors for number in range(1, FUNNEL_MAX_STEPS + 1)):
            steps_validate(goals)
        cleaned["goals"] = goals
        return cleaned

    def error_message(self) -> str:
        return " ".join(
            f"{self.fields[field].label if field in self.fields else 'Steps'}: {' '.join(errors)}"
            for field, errors in self.errors.items()
        )


def funnel_create(*, name: str, across_visits: bool, goals: list[Goal]) -> Funnel:
    """Store a funnel and its steps (1..n in the order of ``goals``) in one transaction, and
    queue the building of its runs."""
    steps_validate(goals)
    with transaction.atomic():
        funnel = Funnel.objects.create(name=name, across_visits=across_visits)
        FunnelStep.objects.bulk_create(
            FunnelStep(funnel=funnel, position=number, goal=goal)
            for number, goal in enumerate(goals, 1)
        )
        funnel_runs_rebuild_later(funnel_id=funnel.pk)
    return funnel


def funnel_delete(*, funnel_id: int) -> bool:
    """Delete a funnel and its steps (never its goals); False when there was none."""
    deleted, _ = Funnel.objects.filter(pk=funnel_id).delete()
    return bool(deleted)
