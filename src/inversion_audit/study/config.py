"""The study configuration: a typed, validated TOML file. Unknown keys are errors naming the key."""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CohortError, ConfigError
from ..io.paths import check_subject_id
from ..io.untrusted import read_toml
from ..matching.pipeline import PIPELINE_METRICS
from ..models import ARCHITECTURES
from ..training.config import MAX_SEED
from .config_types import build_section, check_bounded, check_type

__all__ = [
    "StudyConfig",
    "apply_overrides",
    "CohortSection",
    "FoldsSection",
    "MatchingSection",
    "load_study_config",
    "dump_study_config",
    "check_folds",
    "missing_cohort",
    "VARIANTS",
]

VARIANTS = ("skull-stripped", "with-skull")
#: the target architectures a study may train (models.ARCHITECTURES, listed once)
ARCHS = tuple(ARCHITECTURES)
THREAT_MODELS = ("bottleneck", "bottleneck+skips")
#: the paper's metrics, then opt-in ones: SSIM and correlation inside each candidate's brain
#: (its labels > 0), which the whole-grid background does not dominate
#: and the learned re-identifier "reid", trained per fold and run on the attack set ([reid] table)
METRICS = PIPELINE_METRICS


@dataclass(frozen=True)
class StudySection:
    name: str = "study"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"study.device must be auto|cpu|cuda|mps, got {self.device!r}")
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
    #: the non-member control (issue 18): ids outside the protocol, a count, or a folder
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
        check_bounded("matching.top_k", self.top_k, 1, 10**6)
        check_bounded("matching.n_workers", self.n_workers, 1, 4096)


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
    archs: list[str] = field(default_factory=lambda: list(ARCHS))
    threat_models: list[str] = field(default_factory=lambda: ["bottleneck"])
    preprocess: dict = field(default_factory=dict)
    variant_preprocess: dict = field(default_factory=dict)
    target: dict = field(default_factory=dict)
    inversion: dict = field(default_factory=dict)
    matching: MatchingSection = field(default_factory=MatchingSection)
    reid: dict = field(default_factory=dict)
    #: ``[[defences]]``: each defence and its strengths (``study.defences_config``)
    defences: list[dict] = field(default_factory=list)
    #: ``[model]``: audit an external model instead of training targets (``study.model_source``)
    model: dict = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        for key, allowed in (
            ("variants", VARIANTS),
            ("archs", ARCHS),
            ("threat_models", THREAT_MODELS),
        ):
            if not getattr(self, key):
                raise ConfigError(
                    f"{key} is empty: name at least one of {', '.join(allowed)} "
                    "(an empty list would run nothing)"
                )
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
        self.reid_config()
        from .defences_config import parse_defences

        parse_defences(self.defences)
        from .model_source import parse_model_source

        parse_model_source(self.model)

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
        try:
            return PreprocessConfig(**data)
        except ConfigError as exc:  # name the table the bad value came from
            message = str(exc)
            own = self.variant_preprocess.get(variant, {})
            for key in own:
                if message.startswith(f"preprocess.{key} "):
                    message = f"variant_preprocess.{variant}.{message.removeprefix('preprocess.')}"
            raise ConfigError(message) from None

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

    def reid_config(self):
        """The :class:`~inversion_audit.matching.reid.ReidConfig` of the ``[reid]`` table."""
        from ..matching.reid import ReidConfig

        data = {**self.reid, "seed": self.reid.get("seed", self.study.seed)}
        return _nested(ReidConfig, data, "reid")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        if not d["model"]:
            d.pop("model")
        if not d["defences"]:
            d.pop("defences")
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
    "defences",
    "model",
    "reid",
}


_PLAIN_TYPES = typing.get_type_hints(StudyConfig)


def study_config_from_dict(data: dict, source: str | None = None) -> StudyConfig:
    """Build and validate a :class:`StudyConfig`; unknown keys raise :class:`ConfigError`."""
    kwargs: dict[str, Any] = {}
    try:
        for key, value in data.items():
            if key in _SECTIONS:
                kwargs[key] = build_section(_SECTIONS[key], value, key)
            elif key in _PLAIN:
                check_type(value, _PLAIN_TYPES[key], key)
                if key == "variant_preprocess":
                    for variant, table in value.items():
                        check_type(table, dict, f"variant_preprocess.{variant}")
                kwargs[key] = value
            else:
                raise ConfigError(
                    f"unknown key '{key}' (allowed: {', '.join(sorted([*_SECTIONS, *_PLAIN]))})"
                )
        config = StudyConfig(**kwargs, source=source)
        cohort = data.get("cohort")
        if not isinstance(cohort, dict) or "path" not in cohort:
            raise ConfigError(
                "the config names no cohort: set [cohort] path to a cohort folder or CSV "
                'manifest, or path = "sample" for the bundled synthetic cohort'
            )
        return config
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from exc


def load_study_config(path: str | os.PathLike[str]) -> StudyConfig:
    """Read and validate a study TOML file; errors name the file and the key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise ConfigError(f"{path}: the config file is empty; a study needs at least [cohort] path")
    data = read_toml(path, ConfigError, "study config")  # size and nesting bounded first
    return study_config_from_dict(data, source=str(path))


def apply_overrides(
    config: StudyConfig, device: str | None = None, threads: int | None = None
) -> StudyConfig:
    """``config`` with the CLI's or napari's ``device``/``threads`` in ``[study]``; ``None``
    keeps what the config says. The one place either front end overrides a config."""
    changes = {k: v for k, v in (("device", device), ("threads", threads)) if v is not None}
    if not changes:
        return config
    return dataclasses.replace(config, study=dataclasses.replace(config.study, **changes))


def check_folds(config: StudyConfig, n_subjects: int) -> None:
    """At run start: ``folds.n_folds`` must not exceed the subjects (each fold needs one private subject)."""
    n = config.folds.n_folds
    if n > n_subjects:
        where = f"{config.source}: " if config.source else ""
        raise ConfigError(
            f"{where}folds.n_folds = {n} but the cohort has {n_subjects} subjects: "
            f"each fold needs at least one private subject (use n_folds <= {n_subjects})"
        )


def missing_cohort(config: StudyConfig, key: str, value: str, location: Path) -> ConfigError:
    """The error for a ``cohort.path`` (or ``cohort.attack_path``) that names no cohort."""
    where = f"{config.source}: " if config.source else ""
    return ConfigError(f"{where}{key} = {value!r}: no cohort folder or CSV manifest at {location}")


def dump_study_config(config: StudyConfig) -> str:
    """TOML text of a config (written as ``STUDY/config.toml``)."""
    import tomli_w

    return tomli_w.dumps(config.to_dict())
