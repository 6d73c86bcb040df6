"""The synthetic sample cohort: MNI152-derived T1 heads with tissue and lobe labels.

``generate_sample_cohort()`` writes (or finds cached) the cohort; code taking a cohort
path calls :func:`resolve_cohort_path` so that the literal ``"sample"`` works anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CohortError
from .synthetic import LABEL_NAMES, generate_sample_cohort, sample_cohort_dir, synthesize_subject

__all__ = [
    "LABEL_NAMES",
    "SAMPLE_KEYWORD",
    "generate_sample_cohort",
    "resolve_cohort_path",
    "sample_cohort_dir",
    "synthesize_subject",
]

#: the cohort "path" that stands for the default sample cohort
SAMPLE_KEYWORD = "sample"


def resolve_cohort_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path`; ``"sample"`` gives the default sample cohort.

    The sample cohort (40 subjects, seed 0, 2 mm, with skull) is generated on first use
    and cached; ``"sample:N"`` gives its first ``N`` subjects. An existing file or folder
    of that name takes precedence.
    """
    text = str(path)
    if Path(text).exists():
        return Path(text)
    if text == SAMPLE_KEYWORD:
        return generate_sample_cohort()
    head, sep, count = text.partition(":")
    if head == SAMPLE_KEYWORD and sep:
        if not count.isdigit() or int(count) < 1:
            raise CohortError(f"{text}: expected 'sample' or 'sample:N' with N >= 1 subjects")
        return generate_sample_cohort(n_subjects=int(count))
    return Path(text)
