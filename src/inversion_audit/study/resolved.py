"""A study's inputs, read and checked before anything is written.

Every image and label header of the cohort (and of a separate attack cohort), the subjects
used, the non-member holdout, the common grid of each variant, the files' hashes and, with
``[model]``, the members: a bad file late in the cohort must not leave the earlier
subjects' outputs behind. Preprocessing computed while checking (the common grid) is held in
``pending`` and cached once the run starts (``save_pending``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..data import Cohort
from ..data.cohort import require_valid
from ..io import file_hash
from .config import StudyConfig, check_folds
from .holdout import gallery, holdout_key, resolve_holdout
from .inputs import check_cohort_paths, common_shape, resolve_cohort, select_subjects

if TYPE_CHECKING:
    from ..data.preprocess import PreprocessConfig

__all__ = ["StudyInputs", "read_inputs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyInputs:
    """What :func:`read_inputs` found: the inputs :func:`~.plan.build_plan` plans with."""

    #: the gallery: protocol subjects, then the holdout
    cohort: Cohort
    holdout_ids: tuple[str, ...]
    attack_cohort: Cohort | None
    #: each variant's preprocessing on the cohort's common grid
    pre_configs: Mapping[str, PreprocessConfig]
    input_hashes: Mapping[str, Mapping[str, str]]
    attack_hashes: Mapping[str, Mapping[str, str]] | None
    #: preprocessing cache entries computed while checking, written once the run starts
    pending: tuple
    #: with ``[model]``: the members (the model's private set)
    members: tuple[str, ...] = ()


def _hashes(cohort: Cohort) -> dict[str, dict[str, str]]:
    return {s.id: {k: file_hash(p) for k, p in s.files().items()} for s in cohort}


def _warn_attack_overlap(private: Mapping, attack: Mapping) -> None:
    """Log attack images that are byte-identical to a private cohort image."""
    by_image = {h["image"]: sid for sid, h in private.items()}
    for sid, h in attack.items():
        if h["image"] in by_image:
            log.warning(
                "attack subject %s has the same image as cohort subject %s: the attack "
                "set is not independent of the private sets",
                sid,
                by_image[h["image"]],
            )


def read_inputs(config: StudyConfig) -> StudyInputs:
    """Read and check every input ``config`` names; write nothing but the sample cohort."""
    check_cohort_paths(config)  # every folder named, before the sample cohort is generated
    full = resolve_cohort(config.cohort.path, config)
    protocol = select_subjects(full, config)
    # the non-member control: scored as candidates and reconstructed, never trained on
    holdout = resolve_holdout(config, full, protocol)
    holdout_ids = tuple(holdout.ids) if holdout is not None else ()
    cohort = gallery(protocol, holdout)
    attack = (
        resolve_cohort(config.cohort.attack_path, config) if config.cohort.attack_path else None
    )
    check_folds(config, len(protocol))
    where = config.source or "config"
    require_valid(cohort, require_labels=config.model is None, where=f"{where}: cohort")
    if attack is not None:
        require_valid(attack, where=f"{where}: cohort.attack_path")
    pending: list = []
    pre_configs = {
        v: common_shape(cohort, config.preprocess_config(v), pending) for v in config.variants
    }
    input_hashes = _hashes(cohort)
    attack_hashes = _hashes(attack) if attack is not None else None
    if attack_hashes is not None:
        _warn_attack_overlap(input_hashes, attack_hashes)
    members: tuple[str, ...] = ()
    if config.model is not None:
        from .model_source import resolve_members

        members = resolve_members(
            config.model, cohort.ids, config.source, (holdout_ids, holdout_key(config))
        )
    return StudyInputs(
        cohort=cohort,
        holdout_ids=holdout_ids,
        attack_cohort=attack,
        pre_configs=pre_configs,
        input_hashes=input_hashes,
        attack_hashes=attack_hashes,
        pending=tuple(pending),
        members=members,
    )
