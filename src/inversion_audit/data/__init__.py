"""Cohorts, fold splits, preprocessing and the synthetic sample cohort."""

from .cohort import (
    DEFAULT_IMAGE_PATTERN,
    DEFAULT_LABELS_PATTERN,
    Cohort,
    CohortIssue,
    Subject,
    load_cohort,
    validate_cohort,
    validate_subject,
)
from .folds import Fold, kfold_split
from .preprocess import (
    PreprocessConfig,
    Preprocessed,
    cache_dir,
    config_with_nyul,
    learn_nyul_landmarks,
    preprocess_cohort,
    preprocess_subject,
    save_pending,
)

__all__ = [
    "DEFAULT_IMAGE_PATTERN",
    "DEFAULT_LABELS_PATTERN",
    "Cohort",
    "CohortIssue",
    "Fold",
    "PreprocessConfig",
    "Preprocessed",
    "Subject",
    "cache_dir",
    "config_with_nyul",
    "kfold_split",
    "learn_nyul_landmarks",
    "load_cohort",
    "preprocess_cohort",
    "preprocess_subject",
    "save_pending",
    "validate_cohort",
    "validate_subject",
]
