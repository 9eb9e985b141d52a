"""Read-only admin for reports and shared links: they change through the settings page only.

A delivery stuck in "sending" (a crash between its claim and its send) shows here; it is never
resent by itself (see dashboard.reports).
"""

from __future__ import annotations

from django.contrib import admin

from dashboard.models import ReportDelivery, ReportSubscription, SharedLink
from tracker.admin import ReadOnlyAdmin


@admin.register(ReportSubscription)
class ReportSubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["user", "kind", "created_at"]
    list_filter = ["kind"]


@admin.register(ReportDelivery)
class ReportDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["period_start", "kind", "user", "status", "attempts", "claimed_at", "sent_at"]
    list_filter = ["status", "kind", "period_start"]


@admin.register(SharedLink)
class SharedLinkAdmin(ReadOnlyAdmin):
    # The verifier's hash stays out of sight; the token itself is stored nowhere.
    list_display = ["label", "created_by", "created_at", "expires_at", "revoked_at", "last_used_at"]
    exclude = ["verifier_hash"]
