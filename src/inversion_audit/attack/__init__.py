"""The model inversion attack: an inversion decoder trained on the attack set, and ``reconstruct``.

``InversionConfig`` loads without torch; everything else imports it on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import InversionConfig

__all__ = [
    "InversionConfig",
    "InversionDecoder",
    "SubjectReconstruction",
    "build_inversion_decoder",
    "encode_images",
    "freeze",
    "reconstruct",
    "reconstruct_many",
    "reconstruct_subject",
    "reconstruct_volume",
    "train_inversion",
    "write_reconstruction",
]

_LAZY = {
    "InversionDecoder": "decoder",
    "build_inversion_decoder": "decoder",
    "encode_images": "inversion",
    "freeze": "inversion",
    "train_inversion": "inversion",
    "reconstruct": "reconstruction",
    "reconstruct_many": "reconstruction",
    "reconstruct_subject": "reconstruction",
    "reconstruct_volume": "reconstruction",
    "SubjectReconstruction": "reconstruction",
    "write_reconstruction": "reconstruction",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
