"""What the stages of one study run share besides the plan: where the study is, the stage
records, the device, progress and cancel, the loaded external models and the
preprocessing cache."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..data import Cohort
from ..data.preprocess import PreprocessConfig, Preprocessed, config_with_nyul, preprocess_subject
from ..io import config_hash
from ..progress import ProgressCallback, report
from .layout import StudyPaths
from .stages import StageStore

if TYPE_CHECKING:
    from ..data import Fold
    from .plan import StudyPlan

__all__ = ["StudyContext"]


@dataclass
class StudyContext:
    """One run's paths (:class:`~.layout.StudyPaths`), stage store, device, progress callback
    (which may raise ``JobCancelled``), external models and preprocessing cache."""

    paths: StudyPaths
    stages: StageStore
    device: str
    progress: ProgressCallback | None = None
    #: with ``[model]``: each variant's loaded model
    models: Mapping[str, Any] = field(default_factory=dict)
    # keyed by the subject's files, not its id: the attack cohort may reuse private ids
    _pre: dict[tuple[tuple[str, ...], str], Preprocessed] = field(default_factory=dict)

    def pre(self, cohort: Cohort, subject_id: str, config: PreprocessConfig) -> Preprocessed:
        """``subject_id`` of ``cohort`` preprocessed with ``config`` (computed once)."""
        subject = cohort[subject_id]
        key = (tuple(str(p) for p in subject.files().values()), config_hash(config.to_dict()))
        if key not in self._pre:
            self._pre[key] = preprocess_subject(subject, config)
        return self._pre[key]

    def fold_pre_config(self, plan: StudyPlan, variant: str, fold: Fold) -> PreprocessConfig:
        """The variant's preprocessing; Nyul landmarks (if used) learned on the fold's private
        set only."""
        return config_with_nyul(
            plan.pre_configs[variant], [plan.cohort[i] for i in fold.private_set]
        )

    def stage_progress(self, label: str) -> ProgressCallback:
        """The progress callback of one stage, its messages prefixed with ``label``."""

        def cb(done: int, total: int, stage: str) -> None:
            report(self.progress, done, total, f"{label}: {stage}")

        return cb
