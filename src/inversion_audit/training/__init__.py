"""Training of target segmentation networks on the private set, and the one training loop
(``training.fit.fit``) shared by the target, inversion decoder, re-identifier and VAE.

``TargetConfig`` loads without torch; the training functions import it on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import TargetConfig, label_map_from_groups, parse_label_map

__all__ = [
    "FitHistory",
    "TargetConfig",
    "TrainingHistory",
    "apply_label_map",
    "label_map_from_groups",
    "parse_label_map",
    "segment",
    "train_target",
]

_LAZY = {
    "FitHistory": "fit",
    "TrainingHistory": "loop",
    "apply_label_map": "target",
    "segment": "target",
    "train_target": "target",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
