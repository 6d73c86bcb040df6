"""The study's plan: what runs on which subjects, fixed before anything is trained.

:func:`build_plan` turns a validated config and its read inputs (:mod:`.resolved`) into a
frozen :class:`StudyPlan`: the cohort, the folds (the k-fold split of the paper's protocol,
Subbanna et al., Sensors 2021, or one fold of an external model's members), the non-member
holdout per fold, each variant's preprocessing, and every :class:`Run`. Nothing downstream
changes it; the stages (:mod:`.target_stages`, :mod:`.attack_stages`, :mod:`.reid_stage`)
read it with a :class:`~.context.StudyContext`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..attack.convergence import split_attack_set
from ..data import Cohort, Fold, kfold_split
from ..errors import ConfigError
from ..io import config_hash
from .config import StudyConfig
from .defences_config import DefenceSetting, all_settings
from .holdout import assign_holdout, check_holdout_unused
from .layout import run_name

if TYPE_CHECKING:
    from ..data.preprocess import PreprocessConfig
    from .resolved import StudyInputs

__all__ = ["EXTERNAL", "Run", "StudyPlan", "build_plan"]

#: the ``arch`` of an external model's runs (``[model]``)
EXTERNAL = "external"


@dataclass(frozen=True)
class Run:
    """One attack of the study: a target (``arch``, or ``"external"`` for ``[model]``), a
    variant, a threat model and the defence it is released under (``None``: undefended)."""

    arch: str
    variant: str
    threat_model: str
    defence: DefenceSetting | None = None

    @property
    def name(self) -> str:
        """The folder name: ``<arch>_<variant>_<threat>[_<defence tag>]``."""
        return run_name(self.arch, self.variant, self.threat_model, self.defence_tag)

    @property
    def defence_tag(self) -> str:
        """The ``defence`` column of ``scores.csv``: the setting's tag, empty when undefended."""
        return self.defence.tag if self.defence is not None else ""

    @property
    def target_variant(self) -> str:
        """The ``checkpoints/<arch>_<target_variant>`` folder of the target this run attacks."""
        if self.defence is not None and self.defence.retrains_target:
            return f"{self.variant}_{self.defence.target_tag}"
        return self.variant

    def stage(self, fold: Fold, kind: str) -> str:
        """A stage name of this run: ``fold<k>/<run>/<kind>``."""
        return f"fold{fold.index}/{self.name}/{kind}"


@dataclass(frozen=True)
class StudyPlan:
    """Everything a study runs, decided before the first stage (see :func:`build_plan`)."""

    config: StudyConfig
    #: the gallery: protocol subjects, then the holdout
    cohort: Cohort
    holdout_ids: tuple[str, ...]
    folds: tuple[Fold, ...]
    holdout_by_fold: Mapping[int, tuple[str, ...]]
    #: each variant's preprocessing (common grid; an nnU-Net model's own spacing and patch)
    pre_configs: Mapping[str, PreprocessConfig]
    input_hashes: Mapping[str, Mapping[str, str]]
    attack_cohort: Cohort | None
    attack_hashes: Mapping[str, Mapping[str, str]] | None
    runs: tuple[Run, ...]
    #: with ``[model]``: each variant's model description (``ExternalModel.describe``)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def external(self) -> bool:
        return self.config.model is not None

    @property
    def settings(self) -> tuple[DefenceSetting, ...]:
        """The ``[[defences]]`` settings, in config order."""
        return tuple(all_settings(self.config.defences))

    def runs_of(self, arch: str, variant: str, defence: DefenceSetting | None = None) -> list[Run]:
        """The runs of one target and variant under one defence (one per threat model)."""
        return [r for r in self.runs if (r.arch, r.variant, r.defence) == (arch, variant, defence)]

    def holdout_of(self, fold: Fold) -> list[str]:
        """The holdout ids this fold's networks reconstruct (none without a holdout)."""
        return list(self.holdout_by_fold.get(fold.index, ()))

    def attack_ids(self, fold: Fold) -> tuple[list[str], Cohort]:
        """The decoder's training ids and the cohort they come from."""
        if self.attack_cohort is not None:
            return sorted(self.attack_cohort.ids), self.attack_cohort
        return list(fold.attack_set), self.cohort

    def files_key(self, ids) -> str:
        """The hash of the input files of ``ids``."""
        return config_hash({i: self.input_hashes[i] for i in sorted(ids)})

    def attack_key(self, fold: Fold) -> dict:
        """What a stage key holds about the attack set: its ids, and its files' hashes when a
        separate attack cohort is configured (studies without one keep their keys)."""
        ids, _ = self.attack_ids(fold)
        key: dict = {"attack": ids}
        if self.attack_hashes is not None:
            key["attack_files"] = config_hash({i: self.attack_hashes[i] for i in ids})
        return key


def _runs(config: StudyConfig) -> tuple[Run, ...]:
    """Undefended runs, then every defence setting's, in the order the stages run them."""
    archs = [EXTERNAL] if config.model is not None else list(config.archs)
    settings: list[DefenceSetting | None] = [None]
    if config.model is None:
        settings += all_settings(config.defences)
    return tuple(
        Run(a, v, t, s)
        for s in settings
        for v in config.variants
        for a in archs
        for t in config.threat_models
    )


def _external_fold(config: StudyConfig, inputs: StudyInputs) -> Fold:
    """Fold 0: the members as the private set, the cohort's other subjects (less the
    holdout) as the attack set."""
    unused = {*inputs.members, *inputs.holdout_ids}
    others = tuple(sorted(i for i in inputs.cohort.ids if i not in unused))
    if not others and inputs.attack_cohort is None:
        raise ConfigError(
            f"{config.source or 'config'}: model.members holds every cohort subject; "
            "the attack set is empty (add subjects or set cohort.attack_path)"
        )
    return Fold(0, inputs.members, others)


def _check_validation_split(
    config: StudyConfig, folds: list[Fold], attack: list[str] | None
) -> None:
    """With ``inversion.validation_fraction``: each fold's attack set must split into a
    training and a validation part (at least 2 subjects), refused before anything is trained."""
    fraction = config.inversion.validation_fraction
    if not fraction:
        return
    for fold in folds:
        ids = attack or list(fold.attack_set)
        try:
            split_attack_set(len(ids), fraction, config.inversion.seed, ids)
        except ValueError as exc:
            raise ConfigError(
                f"{config.source or 'config'}: inversion.validation_fraction = {fraction}: "
                f"fold {fold.index}: {exc}"
            ) from None


def build_plan(
    config: StudyConfig, inputs: StudyInputs, models: Mapping[str, Any] | None = None
) -> StudyPlan:
    """The study's plan from its validated ``config``, its read ``inputs`` and, with
    ``[model]``, each variant's loaded model (its description and, for nnU-Net, the
    preprocessing that replaces the study's). Pure: reads and writes nothing; raises
    :class:`ConfigError` / :class:`~inversion_audit.errors.CohortError` when a holdout id
    would train anything or an external model leaves no attack set."""
    protocol = [i for i in inputs.cohort.ids if i not in set(inputs.holdout_ids)]
    folds = kfold_split(protocol, config.folds.n_folds, config.folds.seed)
    if config.folds.run_folds is not None:
        folds = [f for f in folds if f.index in config.folds.run_folds]
    attack_ids = sorted(inputs.attack_cohort.ids) if inputs.attack_cohort is not None else None
    for fold in folds:  # fail before any training if a holdout id would train
        check_holdout_unused(
            inputs.holdout_ids,
            {
                f"fold {fold.index} private set": fold.private_set,
                f"fold {fold.index} attack set": attack_ids or fold.attack_set,
            },
        )
    pre_configs = dict(inputs.pre_configs)
    described: dict[str, Mapping[str, Any]] = {}
    if config.model is not None:
        fold = _external_fold(config, inputs)
        folds = [fold]
        check_holdout_unused(  # the model's members and the decoder's set
            inputs.holdout_ids,
            {
                "model's members (the private set)": fold.private_set,
                "fold 0 attack set": attack_ids or fold.attack_set,
            },
        )
        for variant, model in (models or {}).items():
            described[variant] = model.describe()
            if model.preprocess is not None:  # nnU-Net: the plans' spacing and patch size
                base = pre_configs[variant]
                pre_configs[variant] = dataclasses.replace(
                    model.preprocess, skull_strip=base.skull_strip, intensity=base.intensity
                )
    _check_validation_split(config, folds, attack_ids)
    by_fold = assign_holdout(inputs.holdout_ids, folds)
    return StudyPlan(
        config=config,
        cohort=inputs.cohort,
        holdout_ids=tuple(inputs.holdout_ids),
        folds=tuple(folds),
        holdout_by_fold={k: tuple(v) for k, v in by_fold.items()},
        pre_configs=pre_configs,
        input_hashes=inputs.input_hashes,
        attack_cohort=inputs.attack_cohort,
        attack_hashes=inputs.attack_hashes,
        runs=_runs(config),
        models=described,
    )
