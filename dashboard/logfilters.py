"""Keep shared-link tokens out of logs: Django and gunicorn log request paths.

Attached to the request loggers' own Logger objects (DashboardConfig.ready), so the record is
rewritten before any handler sees it, whatever handlers an operator configures.
"""

from __future__ import annotations

import logging
import re

TOKEN_IN_PATH = re.compile(r"/share/[^/?#\s\"']+")
REQUEST_LOGGERS = ("django.request", "django.server", "gunicorn.access", "gunicorn.error")


def redact_share_tokens(text: str) -> str:
    return TOKEN_IN_PATH.sub("/share/[token]", text)


class SharedTokenFilter(logging.Filter):
    """Rewrite /share/<token> in a record's message and drop the request it carries."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/share/" in message:
            record.msg, record.args = redact_share_tokens(message), ()
        if hasattr(record, "request") and "/share/" in getattr(record.request, "path", ""):
            record.request = None
        return True


def token_filters_install() -> None:
    token_filter = SharedTokenFilter()
    for name in REQUEST_LOGGERS:
        logging.getLogger(name).addFilter(token_filter)
