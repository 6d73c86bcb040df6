"""Provenance of a study: versions, seeds, input hashes, device, times."""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata

__all__ = ["package_versions", "Provenance"]

_PACKAGES = (
    "napari-inversion-audit",
    "torch",
    "monai",
    "antspyx",
    "nibabel",
    "numpy",
    "scikit-image",
    "scipy",
    "dask",
    "distributed",
    "nilearn",
    "safetensors",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that determine a study's numbers."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Provenance:
    """Collects what ``provenance.json`` records."""

    def __init__(self, config: dict, device: str) -> None:
        self.data: dict = {
            "versions": package_versions(),
            "config": config,
            "seeds": {},
            "device": device,
            "inputs": {},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "finished": None,
            "stage_seconds": {},
            "resumed_stages": [],
        }

    def to_dict(self, stage_seconds: dict[str, float]) -> dict:
        self.data["stage_seconds"] = {k: round(v, 3) for k, v in sorted(stage_seconds.items())}
        return self.data

    def finish(self) -> None:
        self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
