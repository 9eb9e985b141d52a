from __future__ import annotations

import os

import pytest
from django.core.cache import cache


@pytest.fixture
def redis_or_locmem_cache(settings):
    """The configured cache, emptied: real Redis when REDIS_URL is set, else local memory."""
    if os.environ.get("REDIS_URL"):
        assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    cache.clear()
    yield cache
    cache.clear()
