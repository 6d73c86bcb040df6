"""The study configuration: a TOML file parsed once into typed, frozen tables.

:func:`load_study_config` reads the file and :func:`study_config_from_dict` builds a
:class:`StudyConfig`: every table is checked (types, ranges, unknown keys; errors name the
file and the key) and typed once: the sections ``[study]``, ``[cohort]``, ``[folds]``,
``[matching]`` (:mod:`.config_sections`), ``[target]``, ``[inversion]``, ``[reid]``
(:mod:`.config_tables`), ``[[defences]]`` (:mod:`.defences_config`) and ``[model]``
(:mod:`.model_source`). The seeds of ``[target]``, ``[inversion]``, ``[reid]`` and of the
defences that draw random numbers are filled from ``study.seed`` where a table gives none,
here and nowhere else. :func:`apply_overrides` is the one place a front end (the CLI's
``--device``/``--threads``, napari's Run study) changes a config; ``None`` keeps what the
config says.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.preprocess_config import PreprocessConfig
from ..errors import ConfigError
from ..io.untrusted import read_toml
from ..matching.pipeline import PIPELINE_METRICS
from ..models import ARCHITECTURES, THREAT_MODELS
from .config_sections import CohortSection, FoldsSection, MatchingSection, StudySection
from .config_tables import InversionTable, ReidTable, TargetTable
from .config_types import build_section, check_type
from .defences_config import DefenceSpec, parse_defences
from .model_source import ModelSource, parse_model_source

__all__ = [
    "StudyConfig",
    "StudySection",
    "CohortSection",
    "FoldsSection",
    "MatchingSection",
    "TargetTable",
    "InversionTable",
    "ReidTable",
    "apply_overrides",
    "load_study_config",
    "dump_study_config",
    "registration_workers",
    "check_folds",
    "missing_cohort",
    "VARIANTS",
]

#: the study's variants: the private scans with their skull stripped, or as acquired
VARIANTS = ("skull-stripped", "with-skull")
#: the target architectures a study may train (models.ARCHITECTURES, listed once)
ARCHS = tuple(ARCHITECTURES)
#: the paper's metrics, then opt-in ones (``matching.pipeline.PIPELINE_METRICS``, listed once)
METRICS = PIPELINE_METRICS


@dataclass(frozen=True)
class StudyConfig:
    """All settings of one audit study, each table typed and frozen.

    ``archs``, ``variants`` and ``threat_models`` select the runs; ``target``, ``inversion``
    and ``reid`` give each run's settings (``target.config(arch)``,
    ``inversion.config(threat_model)``, ``reid.settings``); ``preprocess`` holds settings
    shared by the variants and ``variant_preprocess`` per-variant overrides (as written;
    :meth:`preprocess_config` gives a variant's typed settings); ``defences`` the
    ``[[defences]]`` tables; ``model`` the external model audited instead of training
    targets (``None``: the paper's protocol).
    """

    study: StudySection = field(default_factory=StudySection)
    cohort: CohortSection = field(default_factory=CohortSection)
    folds: FoldsSection = field(default_factory=FoldsSection)
    variants: list[str] = field(default_factory=lambda: ["skull-stripped"])
    archs: list[str] = field(default_factory=lambda: list(ARCHS))
    threat_models: list[str] = field(default_factory=lambda: ["bottleneck"])
    preprocess: dict = field(default_factory=dict)
    variant_preprocess: dict = field(default_factory=dict)
    target: TargetTable = field(default_factory=lambda: TargetTable.parse({}))
    inversion: InversionTable = field(default_factory=lambda: InversionTable.parse({}))
    matching: MatchingSection = field(default_factory=MatchingSection)
    reid: ReidTable = field(default_factory=lambda: ReidTable.parse({}))
    #: ``[[defences]]``: each defence and its strengths
    defences: tuple[DefenceSpec, ...] = ()
    #: ``[model]``: audit an external model instead of training targets
    model: ModelSource | None = None
    source: str | None = None
    #: each configured variant's preprocessing, built once
    _pre: Mapping[str, PreprocessConfig] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )

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
            for name in getattr(self, key):
                if name not in allowed:
                    what = {"variants": "variant", "archs": "architecture"}.get(key, "threat model")
                    raise ConfigError(
                        f"{key}: unknown {what} {name!r} (allowed: {', '.join(allowed)})"
                    )
        for v in self.variant_preprocess:
            if v not in VARIANTS:
                raise ConfigError(
                    f"unknown key 'variant_preprocess.{v}' (allowed: {', '.join(VARIANTS)})"
                )
        # the seeds, filled once: a table's own, else the study's
        seed = self.study.seed
        object.__setattr__(self, "target", self.target.with_seed(seed))
        object.__setattr__(self, "inversion", self.inversion.with_seed(seed))
        object.__setattr__(self, "reid", self.reid.with_seed(seed))
        object.__setattr__(self, "defences", tuple(d.with_seed(seed) for d in self.defences))
        multiple = self.target.settings.multiple
        pre = {
            v: self._build_preprocess(v)
            for v in VARIANTS
            if v in {*self.variants, *self.variant_preprocess}
        }
        for v, cfg in sorted(pre.items()):
            if cfg.divisible_by % multiple:
                raise ConfigError(
                    f"preprocess.divisible_by = {cfg.divisible_by} ({v}) is not a multiple of the "
                    f"target's pool_size ** depth = {multiple}"
                )
        object.__setattr__(self, "_pre", pre)

    def preprocess_config(self, variant: str) -> PreprocessConfig:
        """The :class:`PreprocessConfig` of a variant (skull stripping set by the variant)."""
        if variant in self._pre:
            return self._pre[variant]
        return self._build_preprocess(variant)

    def _build_preprocess(self, variant: str) -> PreprocessConfig:
        own = self.variant_preprocess.get(variant, {})
        data = {**self.preprocess, **own}
        data.setdefault("skull_strip", "labels" if variant == "skull-stripped" else "none")
        data.setdefault("divisible_by", self.target.settings.multiple)
        for key in data:
            if key not in {f.name for f in dataclasses.fields(PreprocessConfig)}:
                where = f"variant_preprocess.{variant}" if key in own else "preprocess"
                raise ConfigError(f"unknown key '{where}.{key}'")
        for key in ("spacing", "shape", "percentiles"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        try:
            return PreprocessConfig(**data)
        except ConfigError as exc:  # name the table the bad value came from
            message = str(exc)
            for key in own:
                if message.startswith(f"preprocess.{key} "):
                    message = f"variant_preprocess.{variant}.{message.removeprefix('preprocess.')}"
            raise ConfigError(message) from None

    def to_dict(self) -> dict:
        """The config as written (``config.toml``, ``provenance.json``): every section's
        fields, each other table as its file wrote it."""
        d: dict[str, Any] = {
            "study": dataclasses.asdict(self.study),
            "cohort": dataclasses.asdict(self.cohort),
            "folds": dataclasses.asdict(self.folds),
            "variants": list(self.variants),
            "archs": list(self.archs),
            "threat_models": list(self.threat_models),
            "preprocess": copy.deepcopy(self.preprocess),
            "variant_preprocess": copy.deepcopy(self.variant_preprocess),
            "target": self.target.to_dict(),
            "inversion": self.inversion.to_dict(),
            "matching": self.matching.to_dict(),
            "reid": self.reid.to_dict(),
        }
        if self.defences:
            d["defences"] = [spec.to_dict() for spec in self.defences]
        if self.model is not None:
            d["model"] = self.model.to_dict()
        return _drop_none(d)


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
#: the other tables: their TOML type, and how each is parsed
_TABLES: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "target": (dict, TargetTable.parse),
    "inversion": (dict, InversionTable.parse),
    "reid": (dict, ReidTable.parse),
    "defences": (list[dict], lambda value: tuple(parse_defences(value))),
    "model": (dict, parse_model_source),
}
#: top-level keys kept as written
_PLAIN = {
    "variants": list[str],
    "archs": list[str],
    "threat_models": list[str],
    "preprocess": dict,
    "variant_preprocess": dict,
}


def study_config_from_dict(data: dict, source: str | None = None) -> StudyConfig:
    """Build and validate a :class:`StudyConfig`; unknown keys raise :class:`ConfigError`."""
    kwargs: dict[str, Any] = {}
    try:
        for key, value in data.items():
            if key in _SECTIONS:
                kwargs[key] = build_section(_SECTIONS[key], value, key)
            elif key in _TABLES:
                tp, parse = _TABLES[key]
                check_type(value, tp, key)
                kwargs[key] = parse(value)
            elif key in _PLAIN:
                check_type(value, _PLAIN[key], key)
                if key == "variant_preprocess":
                    for variant, table in value.items():
                        check_type(table, dict, f"variant_preprocess.{variant}")
                kwargs[key] = copy.deepcopy(value)
            else:
                allowed = sorted([*_SECTIONS, *_TABLES, *_PLAIN])
                raise ConfigError(f"unknown key '{key}' (allowed: {', '.join(allowed)})")
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
    """``config`` with the CLI's or napari's ``device`` and ``threads``; ``None`` keeps what
    the config says. The one place either front end overrides a config.

    ``threads`` is torch's CPU threads (``study.threads``) and the registrations run at once
    (``matching.threads``): a front end's thread count holds for the whole study.
    """
    study = {k: v for k, v in (("device", device), ("threads", threads)) if v is not None}
    if not study:
        return config
    changes: dict[str, Any] = {"study": dataclasses.replace(config.study, **study)}
    if threads is not None:
        changes["matching"] = dataclasses.replace(config.matching, threads=threads)
    return dataclasses.replace(config, **changes)


def registration_workers(config: StudyConfig) -> int:
    """The registrations the score stage runs at once, each with one ITK thread:
    ``matching.threads``, or with ``"auto"`` ``study.threads`` when set, else every core this
    process may use (:func:`~inversion_audit.devices.resolve_threads`)."""
    from ..devices import resolve_threads

    threads = config.matching.threads
    if threads == "auto" and config.study.threads is not None:
        threads = config.study.threads
    return resolve_threads(threads)


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
