"""The study configuration: a typed, validated TOML file. Unknown keys are errors naming the key."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .layout import run_name

__all__ = [
    "StudyConfig",
    "CohortSection",
    "FoldsSection",
    "MatchingSection",
    "load_study_config",
    "dump_study_config",
    "VARIANTS",
    "run_name",
]

VARIANTS = ("skull-stripped", "with-skull")
ARCHS = ("unet", "segnet")
THREAT_MODELS = ("bottleneck", "bottleneck+skips")
METRICS = ("ssim", "correlation", "psnr", "deformation", "dice")


def _section(cls, data: Any, name: str):
    if not isinstance(data, dict):
        raise ConfigError(f"[{name}] must be a table, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown key '{name}.{key}' (allowed: {', '.join(sorted(names))})")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"[{name}]: {exc}") from exc


@dataclass(frozen=True)
class StudySection:
    name: str = "study"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"study.device must be auto|cpu|cuda|mps, got {self.device!r}")


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


@dataclass(frozen=True)
class FoldsSection:
    n_folds: int = 4
    seed: int = 0
    run_folds: list[int] | None = None

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise ConfigError(f"folds.n_folds must be >= 2, got {self.n_folds}")
        for k in self.run_folds or ():
            if not 0 <= k < self.n_folds:
                raise ConfigError(f"folds.run_folds: fold {k} is not in 0..{self.n_folds - 1}")


@dataclass(frozen=True)
class MatchingSection:
    metrics: list[str] = field(
        default_factory=lambda: ["ssim", "correlation", "psnr", "deformation", "dice"]
    )
    top_k: int = 5
    deformation_preset: str = "fast"
    scheduler: str | None = None
    n_workers: int | None = None

    def __post_init__(self) -> None:
        for m in self.metrics:
            if m not in METRICS:
                raise ConfigError(
                    f"matching.metrics: unknown metric {m!r} (allowed: {', '.join(METRICS)})"
                )
        if "ssim" not in self.metrics:
            raise ConfigError(
                "matching.metrics must include 'ssim' (deformation runs on the SSIM top-k)"
            )
        if self.deformation_preset not in ("paper", "fast"):
            raise ConfigError(
                f"matching.deformation_preset must be paper|fast, got {self.deformation_preset!r}"
            )
        if self.top_k < 1:
            raise ConfigError(f"matching.top_k must be >= 1, got {self.top_k}")


@dataclass(frozen=True)
class StudyConfig:
    """All settings of one audit study.

    ``target`` and ``inversion`` are passed to the attack's ``TargetConfig`` /
    ``InversionConfig`` (which validate their own keys); ``archs`` and
    ``threat_models`` select the runs. ``preprocess`` holds settings shared by the
    variants and ``variant_preprocess`` per-variant overrides.
    """

    study: StudySection = field(default_factory=StudySection)
    cohort: CohortSection = field(default_factory=CohortSection)
    folds: FoldsSection = field(default_factory=FoldsSection)
    variants: list[str] = field(default_factory=lambda: ["skull-stripped"])
    archs: list[str] = field(default_factory=lambda: ["unet", "segnet"])
    threat_models: list[str] = field(default_factory=lambda: ["bottleneck"])
    preprocess: dict = field(default_factory=dict)
    variant_preprocess: dict = field(default_factory=dict)
    target: dict = field(default_factory=dict)
    inversion: dict = field(default_factory=dict)
    matching: MatchingSection = field(default_factory=MatchingSection)
    source: str | None = None

    def __post_init__(self) -> None:
        for v in self.variants:
            if v not in VARIANTS:
                raise ConfigError(
                    f"variants: unknown variant {v!r} (allowed: {', '.join(VARIANTS)})"
                )
        for a in self.archs:
            if a not in ARCHS:
                raise ConfigError(
                    f"archs: unknown architecture {a!r} (allowed: {', '.join(ARCHS)})"
                )
        for t in self.threat_models:
            if t not in THREAT_MODELS:
                raise ConfigError(
                    f"threat_models: unknown threat model {t!r} (allowed: {', '.join(THREAT_MODELS)})"
                )
        for v in self.variant_preprocess:
            if v not in VARIANTS:
                raise ConfigError(
                    f"unknown key 'variant_preprocess.{v}' (allowed: {', '.join(VARIANTS)})"
                )
        # validate nested configs early so a typo fails before any training
        multiple = self.target_config("unet").multiple
        for v in sorted({*self.variants, *self.variant_preprocess}):
            divisible_by = self.preprocess_config(v).divisible_by
            if divisible_by % multiple:
                raise ConfigError(
                    f"preprocess.divisible_by = {divisible_by} ({v}) is not a multiple of the "
                    f"target's pool_size ** depth = {multiple}"
                )
        self.inversion_config("bottleneck")

    def preprocess_config(self, variant: str):
        """The :class:`PreprocessConfig` of a variant (skull stripping set by the variant)."""
        from ..data.preprocess import PreprocessConfig

        data = {**self.preprocess, **self.variant_preprocess.get(variant, {})}
        data.setdefault("skull_strip", "labels" if variant == "skull-stripped" else "none")
        data.setdefault("divisible_by", self.target_config("unet").multiple)
        for key in data:
            if key not in {f.name for f in dataclasses.fields(PreprocessConfig)}:
                where = (
                    f"variant_preprocess.{variant}"
                    if key in self.variant_preprocess.get(variant, {})
                    else "preprocess"
                )
                raise ConfigError(f"unknown key '{where}.{key}'")
        for key in ("spacing", "shape", "percentiles"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return PreprocessConfig(**data)

    def target_config(self, arch: str):
        from ..training import TargetConfig

        return _nested(
            TargetConfig,
            {**self.target, "arch": arch, "seed": self.target.get("seed", self.study.seed)},
            "target",
        )

    def inversion_config(self, threat_model: str):
        from ..attack import InversionConfig

        data = {
            **self.inversion,
            "threat_model": threat_model,
            "seed": self.inversion.get("seed", self.study.seed),
        }
        return _nested(InversionConfig, data, "inversion")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return _drop_none(d)


def _nested(cls, data: dict, name: str):
    try:
        return cls.from_dict(data)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if f"{name}." in msg else f"[{name}] {msg}") from exc


def _drop_none(obj):
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


_SECTIONS = {
    "study": StudySection,
    "cohort": CohortSection,
    "folds": FoldsSection,
    "matching": MatchingSection,
}
_PLAIN = {
    "variants",
    "archs",
    "threat_models",
    "preprocess",
    "variant_preprocess",
    "target",
    "inversion",
}


def study_config_from_dict(data: dict, source: str | None = None) -> StudyConfig:
    """Build and validate a :class:`StudyConfig`; unknown keys raise :class:`ConfigError`."""
    kwargs: dict[str, Any] = {}
    try:
        for key, value in data.items():
            if key in _SECTIONS:
                kwargs[key] = _section(_SECTIONS[key], value, key)
            elif key in _PLAIN:
                kwargs[key] = value
            else:
                raise ConfigError(
                    f"unknown key '{key}' (allowed: {', '.join(sorted([*_SECTIONS, *_PLAIN]))})"
                )
        return StudyConfig(**kwargs, source=source)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from exc


def load_study_config(path: str | os.PathLike[str]) -> StudyConfig:
    """Read and validate a study TOML file; errors name the file and the key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from exc
    return study_config_from_dict(data, source=str(path))


def dump_study_config(config: StudyConfig) -> str:
    """TOML text of a config (written as ``STUDY/config.toml``)."""
    import tomli_w

    return tomli_w.dumps(config.to_dict())
