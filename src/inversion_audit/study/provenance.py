"""Provenance of a study: versions, the config as written, seeds, the settings its defaults
resolve to, input hashes, device, times."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from importlib import metadata
from typing import TYPE_CHECKING

from ..errors import StudyError
from ..io.untrusted import read_json

if TYPE_CHECKING:
    from .config import StudyConfig

__all__ = [
    "package_versions",
    "Provenance",
    "read_provenance",
    "mark_interrupted",
    "study_seeds",
    "resolved_settings",
]

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


def study_seeds(config: StudyConfig) -> dict[str, int]:
    """The seeds a study trains with (``study.seed`` where a table gives none)."""
    return {
        "study": config.study.seed,
        "folds": config.folds.seed,
        "target": config.target.seed,
        "inversion": config.inversion.seed,
    }


def resolved_settings(config: StudyConfig) -> dict:
    """The settings whose defaults a config may leave out, as the study runs them: the
    decoder's convergence and the registrations (backend, threads, workers at once)."""
    from .config import registration_workers

    m = config.matching
    return {
        "inversion": config.inversion.training_kwargs(),
        "matching": {
            "registration": m.registration,
            "threads": m.threads,
            "registration_workers": registration_workers(config),
        },
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _ended(invocation: dict) -> bool:
    """Whether a ``running`` invocation's process is gone (a kill, a crash, a power cut).

    An invocation of another host, or one recorded without its pid, is taken as ended
    too: only a live process on this host is still running.
    """
    pid = invocation.get("pid")
    if invocation.get("host") != socket.gethostname() or not isinstance(pid, int):
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def mark_interrupted(data: dict) -> dict:
    """Set ``status = "interrupted"`` on each invocation recorded as running whose process is gone."""
    for inv in data.get("invocations") or ():
        if isinstance(inv, dict) and inv.get("status") == "running" and _ended(inv):
            inv["status"] = "interrupted"
    return data


def read_provenance(path: str | os.PathLike[str]) -> dict | None:
    """The ``provenance.json`` at ``path``, or None when missing or unreadable.

    An invocation that never ended (its process was killed) reads as ``interrupted``.
    """
    try:
        data = read_json(path, StudyError, "provenance record")
    except StudyError:
        return None
    return mark_interrupted(data) if isinstance(data, dict) else None


class Provenance:
    """Collects what ``provenance.json`` records.

    One study folder may be computed by several invocations of the command (a
    resumed study): ``started`` is the first invocation's start, ``invocations``
    lists every invocation (start, end, status, device, versions) and
    ``total_stage_seconds`` sums the recorded wall time of the study's stages.
    """

    def __init__(self, config: StudyConfig | dict, device: str) -> None:
        """``config``: the study's config (its record, seeds and resolved settings are
        recorded), or the record alone as a dict."""
        versions = package_versions()
        extra: dict = {}
        if not isinstance(config, dict):
            extra = {"settings": resolved_settings(config)}
            seeds = study_seeds(config)
            config = config.to_dict()
        else:
            seeds = {}
        now = _now()
        self.invocation: dict = {
            "started": now,
            "finished": None,
            "status": "running",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "device": device,
            "versions": versions,
        }
        self.data: dict = {
            "versions": versions,
            "config": config,
            "seeds": seeds,
            "device": device,
            "inputs": {},
            "started": now,
            "finished": None,
            "stage_seconds": {},
            "total_stage_seconds": 0.0,
            "resumed_stages": [],
            "invocations": [self.invocation],
            **extra,
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
        mark_interrupted({"invocations": earlier})
        self.data["invocations"] = [*earlier, self.invocation]
        first = previous.get("started") or (earlier[0].get("started") if earlier else None)
        if first:
            self.data["started"] = first

    def to_dict(
        self,
        stage_seconds: dict[str, float],
        resumed_stages: list[str] | None = None,
        reused_stages: dict[str, str] | None = None,
    ) -> dict:
        """The JSON-safe record, with per-stage wall time, the stages resumed (skipped) and the
        stages copied from another study (``{stage: that study's folder name}``)."""
        self.data["stage_seconds"] = {k: round(v, 3) for k, v in sorted(stage_seconds.items())}
        self.data["total_stage_seconds"] = round(sum(stage_seconds.values()), 3)
        if resumed_stages is not None:
            self.data["resumed_stages"] = list(resumed_stages)
        if reused_stages:
            self.data["reused_stages"] = dict(reused_stages)
        return self.data

    def finish(self, status: str = "finished") -> None:
        """Mark this invocation as ended (``finished``, ``cancelled`` or ``failed``).

        One killed before it could call this stays ``running`` in the file until read:
        :func:`read_provenance` and the next invocation report it as ``interrupted``.
        """
        now = _now()
        self.invocation.update(finished=now, status=status)
        if status == "finished":
            self.data["finished"] = now
