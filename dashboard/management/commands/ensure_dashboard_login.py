"""Make sure a staff login for the dashboard exists; print its password once, when created."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tracker.models import Visit


class Command(BaseCommand):
    help = (
        "Create the dashboard's staff login if none exists, printing its password once; say how"
        " to get demo traffic while there is none."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        self.login_ensure(username)
        if not Visit.objects.exists():
            self.stdout.write(
                "No traffic recorded yet: `make demo` adds a month of generated visits."
            )

    def login_ensure(self, username: str) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_staff=True, is_active=True).exists():
            self.stdout.write(
                "Dashboard login: an active staff user exists "
                f"(reset a password with: python manage.py changepassword {username})"
            )
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Dashboard login created: username {username!r} password {password!r} "
                "(shown once; change it with manage.py changepassword)"
            )
        )
