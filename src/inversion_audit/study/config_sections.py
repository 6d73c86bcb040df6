"""The sections of a study config whose keys are their fields: ``[study]``, ``[cohort]``,
``[folds]`` and ``[matching]`` (each built from its TOML table by
:func:`~.config_types.build_section`, which checks the keys and the values' types first).

Keys added to ``[matching]`` after studies were run (``registration``, ``threads``) are
written to ``config.toml`` and enter the score stage's key only when they differ from their
default, so earlier studies keep their records and stage keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..devices import DEVICES
from ..errors import CohortError, ConfigError
from ..io.paths import check_subject_id
from ..matching.pipeline import PIPELINE_METRICS
from ..metrics.registration import BACKEND_PRESETS, REGISTRATION_BACKENDS
from ..training.config import MAX_SEED
from .config_types import check_bounded

__all__ = ["DEVICES", "StudySection", "CohortSection", "FoldsSection", "MatchingSection"]

#: the ``study.device`` choices (``inversion_audit.devices.get_device``)


@dataclass(frozen=True)
class StudySection:
    name: str = "study"
    seed: int = 0
    device: str = "auto"
    #: torch's CPU threads (``None``: torch's default); also caps ``matching.threads = "auto"``
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"study.device must be {'|'.join(DEVICES)}, got {self.device!r}")
        check_bounded("study.seed", self.seed, 0, MAX_SEED)
        check_bounded("study.threads", self.threads, 1, 4096)
        if not 0 < len(self.name) <= 200:
            raise ConfigError("study.name must be 1 to 200 characters")


@dataclass(frozen=True)
class CohortSection:
    """Where the subjects come from. ``path = "sample"`` is the bundled synthetic cohort."""

    path: str = "sample"
    image_pattern: str = "{id}_T1.nii.gz"
    labels_pattern: str = "{id}_seg.nii.gz"
    n_subjects: int | None = None
    subjects: list[str] | None = None
    attack_path: str | None = None
    sample_n: int = 40
    sample_seed: int = 0
    #: the non-member control: ids outside the protocol, a count, or a folder
    holdout: list[str] | None = None
    holdout_n: int | None = None
    holdout_path: str | None = None

    def __post_init__(self) -> None:
        check_bounded("cohort.n_subjects", self.n_subjects, 1, 10**6)
        check_bounded("cohort.holdout_n", self.holdout_n, 1, 10**6)
        given = [
            k for k in ("holdout", "holdout_n", "holdout_path") if getattr(self, k) is not None
        ]
        if len(given) > 1:
            raise ConfigError(f"cohort: give one of {', '.join(given)}, not several")
        if self.holdout is not None:
            if not 0 < len(self.holdout) <= 10**6 or len(set(self.holdout)) != len(self.holdout):
                raise ConfigError("cohort.holdout must list 1 to 1,000,000 distinct ids")
            try:
                for sid in self.holdout:
                    check_subject_id(sid, "cohort.holdout")
            except CohortError as exc:
                raise ConfigError(str(exc)) from None
            if self.subjects is not None and set(self.holdout) & set(self.subjects):
                clash = sorted(set(self.holdout) & set(self.subjects))[0]
                raise ConfigError(
                    f"cohort.holdout: {clash!r} is also in cohort.subjects; a holdout subject "
                    "must train neither the target nor the decoder"
                )
        check_bounded("cohort.sample_n", self.sample_n, 1, 10**4)
        check_bounded("cohort.sample_seed", self.sample_seed, 0, MAX_SEED)
        for key in ("path", "attack_path", "image_pattern", "labels_pattern", "holdout_path"):
            value = getattr(self, key)
            if value is not None and not 0 < len(value) <= 4096:
                raise ConfigError(f"cohort.{key} must be 1 to 4096 characters")
        for key in ("image_pattern", "labels_pattern"):
            if getattr(self, key).count("{id}") != 1:
                raise ConfigError(
                    f"cohort.{key} must contain {{id}} once, got {getattr(self, key)!r}"
                )
        if self.subjects is not None:
            if len(self.subjects) > 10**6:
                raise ConfigError("cohort.subjects lists more than 1,000,000 ids")
            try:
                for sid in self.subjects:
                    check_subject_id(sid, "cohort.subjects")
            except CohortError as exc:
                raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class FoldsSection:
    n_folds: int = 4
    seed: int = 0
    run_folds: list[int] | None = None

    def __post_init__(self) -> None:
        check_bounded("folds.seed", self.seed, 0, MAX_SEED)
        if self.n_folds < 2:
            raise ConfigError(f"folds.n_folds must be >= 2, got {self.n_folds}")
        check_bounded("folds.n_folds", self.n_folds, 2, 10**4)
        for k in self.run_folds or ():
            if not 0 <= k < self.n_folds:
                raise ConfigError(f"folds.run_folds: fold {k} is not in 0..{self.n_folds - 1}")


@dataclass(frozen=True)
class MatchingSection:
    """``[matching]``: what the score stage computes (:mod:`inversion_audit.matching.pipeline`)."""

    metrics: list[str] = field(
        default_factory=lambda: ["ssim", "correlation", "psnr", "deformation", "dice"]
    )
    top_k: int = 5
    deformation_preset: str = "fast"
    scheduler: str | None = None
    n_workers: int | None = None
    #: the deformation's registration backend (:data:`~..metrics.registration.REGISTRATION_BACKENDS`)
    registration: str = "ants"
    #: registrations at once, each with one ITK thread: a count, or ``"auto"``
    #: (``study.threads`` when set, else every core); the scores do not depend on it
    threads: int | str = "auto"

    def __post_init__(self) -> None:
        for m in self.metrics:
            if m not in PIPELINE_METRICS:
                raise ConfigError(
                    f"matching.metrics: unknown metric {m!r} (allowed: {', '.join(PIPELINE_METRICS)})"
                )
        if "ssim" not in self.metrics:
            raise ConfigError(
                "matching.metrics must include 'ssim' (deformation runs on the SSIM top-k)"
            )
        if self.registration not in REGISTRATION_BACKENDS:
            raise ConfigError(
                f"matching.registration must be one of {', '.join(REGISTRATION_BACKENDS)}, "
                f"got {self.registration!r}"
            )
        presets = BACKEND_PRESETS[self.registration]
        if self.deformation_preset not in presets:
            backend = (
                f" with registration {self.registration!r}" if self.registration != "ants" else ""
            )
            raise ConfigError(
                f"matching.deformation_preset must be {'|'.join(presets)}{backend}, "
                f"got {self.deformation_preset!r}"
            )
        if self.top_k < 1:
            raise ConfigError(f"matching.top_k must be >= 1, got {self.top_k}")
        check_bounded("matching.top_k", self.top_k, 1, 10**6)
        check_bounded("matching.n_workers", self.n_workers, 1, 4096)
        if isinstance(self.threads, str):
            if self.threads != "auto":
                raise ConfigError(
                    f"matching.threads must be 'auto' or an integer in 1..4096, got {self.threads!r}"
                )
        else:
            check_bounded("matching.threads", self.threads, 1, 4096)

    def to_dict(self) -> dict[str, Any]:
        """The section as ``config.toml`` records it: the keys added later only when set."""
        out = dataclasses.asdict(self)
        for name, default in _MATCHING_LATER.items():
            if out[name] == default:
                del out[name]
        return out

    def stage_key(self) -> dict[str, Any]:
        """What the score stage's key holds of it: not ``threads`` (the scores do not depend
        on it), ``registration`` only when it is not ANTs (earlier studies keep their keys)."""
        out = self.to_dict()
        out.pop("threads", None)
        return out


#: ``[matching]`` keys added after studies were run, with their defaults
_MATCHING_LATER = {
    f.name: f.default
    for f in dataclasses.fields(MatchingSection)
    if f.name in ("registration", "threads")
}
