"""Django's PostgreSQL backend, with new connections retried through a restart.

Django opens connections lazily and, with ``CONN_HEALTH_CHECKS``, replaces one that a restart
broke on its first use in a request; only that connect needs to wait, so pages that never touch
the database pay nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.db.backends.postgresql import base

from analytics_site.database import connect_retrying


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        return connect_retrying(
            lambda: super(DatabaseWrapper, self).get_new_connection(conn_params),
            timeout=settings.DATABASE_WAIT_SECONDS,
            retry_on=self.Database.OperationalError,
        )
