"""Admin for the tracker: raw visits, rollups and goal hits are written by code, never by hand;
goals and funnels are what staff edit here."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from tracker import goals
from tracker.funnel_runs import funnel_runs_rebuild_later
from tracker.models import (
    FUNNEL_MAX_STEPS,
    FUNNEL_MIN_STEPS,
    AggregationState,
    Event,
    EventDaily,
    Funnel,
    FunnelStep,
    Goal,
    GoalHit,
    PageDaily,
    PageHourly,
    TrackedSession,
    Visit,
    VisitDaily,
    VisitHourly,
    VisitSummary,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Show rows; refuse add, change and delete (the view permission still applies)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Visit)
class VisitAdmin(ReadOnlyAdmin):
    list_display = [
        "visited_at", "path", "status_code", "response_ms", "referrer_host", "browser", "os",
        "device", "tracking_id",
    ]  # fmt: skip
    list_filter = ["device", "browser", "os", "status_code", "visited_at"]
    search_fields = ["path"]
    date_hierarchy = "visited_at"
    ordering = ["-id"]
    # The changelist must not count a table of millions of rows on every page.
    show_full_result_count = False


@admin.register(TrackedSession)
class TrackedSessionAdmin(ReadOnlyAdmin):
    list_display = [
        "tracking_id", "first_seen", "last_seen", "visits", "pageviews", "duration_seconds",
        "entry_path", "exit_path", "referrer_host", "device", "ended",
    ]  # fmt: skip
    list_filter = ["ended", "device", "browser", "os", "first_seen"]
    search_fields = ["entry_path", "exit_path"]
    ordering = ["-first_seen"]
    show_full_result_count = False


@admin.register(VisitSummary)
class VisitSummaryAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at", "number", "pageviews", "duration_seconds", "entry_path", "exit_path",
        "referrer_host", "utm_campaign", "device", "tracking_id",
    ]  # fmt: skip
    list_filter = ["device", "browser", "os", "started_at"]
    search_fields = ["entry_path", "exit_path"]
    ordering = ["-started_at"]
    show_full_result_count = False


@admin.register(PageHourly)
class PageHourlyAdmin(ReadOnlyAdmin):
    list_display = ["hour", "path", "pageviews", "sessions"]
    list_filter = ["hour"]
    search_fields = ["path"]
    ordering = ["-hour", "path"]
    show_full_result_count = False


@admin.register(VisitHourly)
class VisitHourlyAdmin(ReadOnlyAdmin):
    list_display = [
        "hour",
        "dimension",
        "value",
        "visits",
        "pageviews",
        "bounces",
        "returning_visits",
    ]
    list_filter = ["dimension", "hour"]
    search_fields = ["value"]
    ordering = ["-hour", "dimension", "value"]
    show_full_result_count = False


@admin.register(PageDaily)
class PageDailyAdmin(ReadOnlyAdmin):
    list_display = ["day", "path", "pageviews", "sessions"]
    list_filter = ["day"]
    search_fields = ["path"]
    ordering = ["-day", "path"]
    show_full_result_count = False


@admin.register(VisitDaily)
class VisitDailyAdmin(ReadOnlyAdmin):
    list_display = [
        "day",
        "dimension",
        "value",
        "visits",
        "pageviews",
        "bounces",
        "returning_visits",
    ]
    list_filter = ["dimension", "day"]
    search_fields = ["value"]
    ordering = ["-day", "dimension", "value"]
    show_full_result_count = False


@admin.register(AggregationState)
class AggregationStateAdmin(ReadOnlyAdmin):
    list_display = ["name", "last_visit_id", "updated_at"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "name", "path", "revenue", "tracking_id"]
    list_filter = ["name", "occurred_at"]
    search_fields = ["name", "path"]
    date_hierarchy = "occurred_at"
    ordering = ["-id"]
    show_full_result_count = False


@admin.register(EventDaily)
class EventDailyAdmin(ReadOnlyAdmin):
    list_display = ["day", "name", "occurrences", "visitors"]
    list_filter = ["day"]
    search_fields = ["name"]
    ordering = ["-day", "name"]
    show_full_result_count = False


class GoalAdminForm(forms.ModelForm):
    class Meta:
        model = Goal
        fields = ["name", "kind", "match", "prop_key", "prop_value"]

    def clean(self) -> dict:
        cleaned = super().clean()
        errors = goals.goal_definition_errors(
            kind=cleaned.get("kind") or "",
            match=cleaned.get("match") or "",
            prop_key=cleaned.get("prop_key") or "",
            prop_value=cleaned.get("prop_value") or "",
        )
        for field, messages in errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)
        return cleaned


@admin.register(Goal)
class GoalAdmin(admin.ModelAdmin):
    form = GoalAdminForm
    list_display = ["name", "kind", "match", "prop_key", "prop_value", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "match"]

    def save_model(self, request, obj, form, change) -> None:
        # A new goal, or one whose match changed, gets its hits rebuilt from the raw rows.
        previous = Goal.objects.filter(pk=obj.pk).first() if change else None
        super().save_model(request, obj, form, change)
        if goals.goal_match_changed(obj, previous):
            goals.goal_hits_rebuild_later(goal_id=obj.pk)


@admin.register(GoalHit)
class GoalHitAdmin(ReadOnlyAdmin):
    list_display = ["reached_at", "goal", "revenue", "raw_id", "tracking_id"]
    list_filter = ["goal", "reached_at"]
    list_select_related = ["goal"]
    ordering = ["-reached_at"]
    show_full_result_count = False


class FunnelStepFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        kept = [
            form
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE", False)
        ]
        if not FUNNEL_MIN_STEPS <= len(kept) <= FUNNEL_MAX_STEPS:
            raise ValidationError(
                f"A funnel has {FUNNEL_MIN_STEPS} to {FUNNEL_MAX_STEPS} steps; {len(kept)} given."
            )


class FunnelStepInline(admin.TabularInline):
    model = FunnelStep
    formset = FunnelStepFormSet
    ordering = ["position"]
    extra = 0
    min_num = FUNNEL_MIN_STEPS
    max_num = FUNNEL_MAX_STEPS
    fields = ["position", "goal"]


@admin.register(Funnel)
class FunnelAdmin(admin.ModelAdmin):
    """Funnels are configuration: staff edit them here or on the dashboard's funnels page."""

    list_display = ["name", "across_visits", "created_at"]
    inlines = [FunnelStepInline]

    def save_related(self, request, form, formsets, change) -> None:
        """Queue the rebuild of the funnel's runs once its steps are saved."""
        super().save_related(request, form, formsets, change)
        funnel_runs_rebuild_later(funnel_id=form.instance.pk)
