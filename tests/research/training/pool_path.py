"""Where the real-alert pool is: SURVEY_POOL_DIR, else ../shared/ztf_pool beside the repository."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
POOL = Path(os.environ.get("SURVEY_POOL_DIR") or REPO.parent / "shared" / "ztf_pool")
