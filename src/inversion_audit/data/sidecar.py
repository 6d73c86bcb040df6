"""The preprocessing a checkpoint sidecar records (read by the attack and by checkpoint loading)."""

from __future__ import annotations

from typing import Any

from ..errors import CheckpointError, ConfigError
from .preprocess import PreprocessConfig

__all__ = ["preprocess_config"]


def preprocess_config(meta: dict[str, Any]) -> PreprocessConfig | None:
    """The :class:`PreprocessConfig` recorded in a sidecar (with Nyul landmarks), or ``None``."""
    if not meta.get("preprocess"):
        return None
    try:
        return PreprocessConfig.from_dict(meta["preprocess"])
    except ConfigError as exc:
        raise CheckpointError(
            f"checkpoint sidecar holds an invalid preprocess config: {exc}"
        ) from exc
