"""The study's inputs: the cohort named in the config, the subjects used, the common grid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..data import Cohort, load_cohort
from ..data.preprocess import PreprocessConfig, preprocess_subject
from ..errors import CohortError
from .config import StudyConfig, missing_cohort

__all__ = [
    "check_cohort_paths",
    "cohort_location",
    "resolve_cohort",
    "select_subjects",
    "common_shape",
]


def cohort_location(path: str, config: StudyConfig, generate: bool = True) -> Path:
    """The folder (or manifest) a config's cohort ``path`` names, resolved as the runner does.

    ``"sample"`` (when no such file exists) is the sample cohort of ``cohort.sample_n``
    subjects and ``cohort.sample_seed``: generated (or found cached) when ``generate``,
    else only its cache folder. A relative path is relative to the config file's folder
    when it exists there, else to the working directory.
    """
    from ..sample_data import SAMPLE_KEYWORD, generate_sample_cohort, sample_cohort_dir

    if path == SAMPLE_KEYWORD and not Path(path).exists():
        n, seed = config.cohort.sample_n, config.cohort.sample_seed
        return (
            generate_sample_cohort(n_subjects=n, seed=seed)
            if generate
            else sample_cohort_dir(n, seed)
        )
    root = Path(path)
    if not root.is_absolute() and config.source:
        cand = Path(config.source).parent / root
        root = cand if cand.exists() else root
    return root


def check_cohort_paths(config: StudyConfig) -> None:
    """Raise :class:`~inversion_audit.errors.ConfigError` for a cohort folder the config names
    (``path``, ``attack_path``, ``holdout_path``) that does not exist; generates nothing."""
    from ..sample_data import SAMPLE_KEYWORD

    for key in ("path", "attack_path", "holdout_path"):
        value = getattr(config.cohort, key)
        if value is None or (value == SAMPLE_KEYWORD and not Path(value).exists()):
            continue
        root = cohort_location(value, config, generate=False)
        if not root.exists():
            raise missing_cohort(config, f"cohort.{key}", value, root)


def resolve_cohort(path: str, config: StudyConfig) -> Cohort:
    """The cohort a config's ``path`` names (see :func:`cohort_location`), loaded."""
    root = cohort_location(path, config)
    if not root.exists():
        key = next(
            (
                f"cohort.{k}"
                for k in ("path", "attack_path", "holdout_path")
                if getattr(config.cohort, k) == path
            ),
            "cohort.path",
        )
        raise missing_cohort(config, key, path, root)
    return load_cohort(root, config.cohort.image_pattern, config.cohort.labels_pattern)


def select_subjects(cohort: Cohort, config: StudyConfig) -> Cohort:
    """The configured ``cohort.subjects`` (default: all, sorted), cut to ``cohort.n_subjects``."""
    ids = config.cohort.subjects or sorted(cohort.ids)
    if config.cohort.n_subjects is not None:
        if config.cohort.n_subjects > len(ids):
            raise CohortError(
                f"{cohort.root}: cohort.n_subjects={config.cohort.n_subjects} but only {len(ids)} subjects"
            )
        ids = ids[: config.cohort.n_subjects]
    return cohort.subset(ids)


def common_shape(
    cohort: Cohort, base: PreprocessConfig, pending: list | None = None
) -> PreprocessConfig:
    """Fix ``shape`` to the largest per-subject shape so that all subjects share one grid.

    ``pending``: see :func:`~inversion_audit.data.preprocess.preprocess_subject` (cache
    entries held back until the job has checked all its inputs).
    """
    if base.shape is not None:
        return base
    loose = dataclasses.replace(base, intensity="none", nyul_landmarks=None)
    shapes = np.array([preprocess_subject(s, loose, pending=pending).shape for s in cohort])
    return dataclasses.replace(base, shape=tuple(int(v) for v in shapes.max(0)))
