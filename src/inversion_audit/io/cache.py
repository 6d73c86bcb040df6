"""The cache folder shared by preprocessing, registration and the sample cohort."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Cache folder: ``$INVERSION_AUDIT_CACHE`` or the platform's user cache folder."""
    env = os.environ.get("INVERSION_AUDIT_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("inversion-audit"))
