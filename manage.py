#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

# Writing and checking migrations is development work: it needs no secret key, so these run in
# development mode unless DEBUG says otherwise. Everything else keeps production as the default.
MIGRATION_AUTHORING = {"makemigrations", "showmigrations", "sqlmigrate", "squashmigrations"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics_site.settings")
    if len(sys.argv) > 1 and sys.argv[1] in MIGRATION_AUTHORING:
        os.environ.setdefault("DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
