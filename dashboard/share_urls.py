"""Shared links: /share/<token>/ and the panels, figures and exports it may open."""

from __future__ import annotations

from django.urls import path

from dashboard import views

app_name = "share"

urlpatterns = [
    path("<str:token>/", views.shared_index, name="index"),
    path("<str:token>/api/stats.json", views.shared_stats_json, name="stats"),
    path("<str:token>/export/sessions.csv", views.shared_export_sessions, name="export-sessions"),
    path("<str:token>/export/pages.csv", views.shared_export_pages, name="export-pages"),
]
