"""The real-alert pool (../shared/ztf_pool, or SURVEY_POOL_DIR) for the pool-route tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """The pool decoded and preprocessed once per module (cached in var/cache when it exists)."""
    from research.training.ztf_pool import load_pool
    from tests.research.training.pool_path import POOL

    cache = Path("var/cache") if Path("var/cache").is_dir() else tmp_path_factory.mktemp("cache")
    return load_pool(POOL, cache_dir=cache)
