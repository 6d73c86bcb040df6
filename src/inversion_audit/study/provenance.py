"""Provenance of a study: versions, seeds, input hashes, device, times."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

__all__ = ["package_versions", "Provenance", "read_provenance"]

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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def read_provenance(path: str | os.PathLike[str]) -> dict | None:
    """The ``provenance.json`` at ``path``, or None when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Provenance:
    """Collects what ``provenance.json`` records.

    One study folder may be computed by several invocations of the command (a
    resumed study): ``started`` is the first invocation's start, ``invocations``
    lists every invocation (start, end, status, device, versions) and
    ``total_stage_seconds`` sums the recorded wall time of the study's stages.
    """

    def __init__(self, config: dict, device: str) -> None:
        versions = package_versions()
        now = _now()
        self.invocation: dict = {
            "started": now,
            "finished": None,
            "status": "running",
            "device": device,
            "versions": versions,
        }
        self.data: dict = {
            "versions": versions,
            "config": config,
            "seeds": {},
            "device": device,
            "inputs": {},
            "started": now,
            "finished": None,
            "stage_seconds": {},
            "total_stage_seconds": 0.0,
            "resumed_stages": [],
            "invocations": [self.invocation],
        }

    def merge_previous(self, previous: dict | None) -> None:
        """Keep the first start and the earlier invocations of an existing ``provenance.json``."""
        if not previous:
            return
        earlier = previous.get("invocations")
        if not isinstance(earlier, list):  # written before invocations were recorded
            earlier = [
                {
                    "started": previous.get("started"),
                    "finished": previous.get("finished"),
                    "status": "finished" if previous.get("finished") else "unknown",
                    "device": previous.get("device"),
                    "versions": previous.get("versions", {}),
                }
            ]
        earlier = [inv for inv in earlier if inv is not self.invocation]
        self.data["invocations"] = [*earlier, self.invocation]
        first = previous.get("started") or (earlier[0].get("started") if earlier else None)
        if first:
            self.data["started"] = first

    def to_dict(
        self, stage_seconds: dict[str, float], resumed_stages: list[str] | None = None
    ) -> dict:
        """The JSON-safe record, with per-stage wall time and the stages resumed (skipped)."""
        self.data["stage_seconds"] = {k: round(v, 3) for k, v in sorted(stage_seconds.items())}
        self.data["total_stage_seconds"] = round(sum(stage_seconds.values()), 3)
        if resumed_stages is not None:
            self.data["resumed_stages"] = list(resumed_stages)
        return self.data

    def finish(self, status: str = "finished") -> None:
        """Mark this invocation as ended (``finished``, ``cancelled`` or ``failed``)."""
        now = _now()
        self.invocation.update(finished=now, status=status)
        if status == "finished":
            self.data["finished"] = now
