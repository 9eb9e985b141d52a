"""What the dashboard stores of its own: report subscriptions and deliveries, shared links."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ReportKind(models.TextChoices):
    WEEKLY = "weekly", "Weekly (Monday to Sunday)"
    MONTHLY = "monthly", "Monthly (calendar month)"


class ReportSubscription(models.Model):
    """A staff user's opt-in to one kind of email report; no row, no email."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="report_subscriptions"
    )
    kind = models.CharField(max_length=10, choices=ReportKind.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="report_subscription_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.kind}"


class ReportDelivery(models.Model):
    """One report for one user and period, claimed before it is sent.

    The unique (user, kind, period_start) row is the claim: whoever inserts it sends, so two
    beats (or a beat and the command) never send the same report twice. A send the SMTP server
    refused is FAILED and claimed again by the next attempt; a send that may have reached the
    server (a connection lost mid-message) or a crash after the claim is never retried.
    """

    class Status(models.TextChoices):
        SENDING = "sending", "Claimed, being sent"
        SENT = "sent", "Sent"
        FAILED = "failed", "Refused before delivery; retried"
        UNKNOWN = "unknown", "Possibly delivered; not retried"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="report_deliveries"
    )
    kind = models.CharField(max_length=10, choices=ReportKind.choices)
    period_start = models.DateField()
    status = models.CharField(max_length=10, choices=Status.choices)
    attempts = models.PositiveSmallIntegerField(default=1)
    claimed_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "kind", "period_start"], name="report_delivery_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.kind} {self.period_start}: {self.status}"


class SharedLink(models.Model):
    """A read-only link to the dashboard's aggregate panels.

    The token is a public selector (to find the row) followed by a secret verifier; only the
    verifier's SHA-256 is stored, so a copy of the database opens no dashboard, and it is
    compared in constant time.
    """

    selector = models.CharField(max_length=16, unique=True)
    verifier_hash = models.CharField(max_length=64)
    label = models.CharField(max_length=100, blank=True, default="")
    allow_exports = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.label or f"link {self.selector}"

    def is_active(self, *, now) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
