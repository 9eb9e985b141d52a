from __future__ import annotations

from django.urls import path

from dashboard import funnel_views, goal_views, journey_views, views

app_name = "dashboard"

urlpatterns = [
    path("", views.index, name="index"),
    path("sessions/<uuid:tracking_id>/", views.session_detail, name="session"),
    path("export/sessions.csv", views.export_sessions, name="export-sessions"),
    path("export/pages.csv", views.export_pages, name="export-pages"),
    path("export/events.csv", views.export_events, name="export-events"),
    path("events/props/", views.event_props, name="event-props"),
    path("funnels/", funnel_views.funnels_page, name="funnels"),
    path("funnels/add/", funnel_views.funnel_add, name="funnel-add"),
    path("funnels/<int:funnel_id>/delete/", funnel_views.funnel_remove, name="funnel-delete"),
    path("journeys/", journey_views.journeys_page, name="journeys"),
    path("api/stats.json", views.stats_json, name="stats"),
    path("settings/", views.settings_page, name="settings"),
    path("goals/", goal_views.goals_page, name="goals"),
    path("goals/<int:goal_id>/delete/", goal_views.goal_delete, name="goal-delete"),
    path("settings/reports/", views.reports_update, name="settings-reports"),
    path("settings/links/", views.shared_link_create, name="settings-links"),
    path(
        "settings/links/<int:link_id>/revoke/",
        views.shared_link_revoke,
        name="settings-link-revoke",
    ),
]
