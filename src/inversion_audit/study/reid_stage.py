"""The study's ``reid`` stage: the attacker's Siamese re-identifier, trained per fold and run.

Trained on the fold's attack set only (cross-fitted decoder reconstructions paired with their
originals, :mod:`inversion_audit.matching.reid`), saved next to the run's inversion decoder
as ``reid.safetensors`` + ``reid.json``, and used by the score stage as the ``reid`` metric.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data import Fold
from ..io import config_hash
from .holdout import check_holdout_unused
from .layout import run_name

if TYPE_CHECKING:
    from .runner import _Study

__all__ = ["reid_path", "train_reid_stage", "reid_scorer", "reid_rows"]


def reid_path(study: _Study, run: str, fold: Fold) -> Path:
    """``checkpoints/<run>/fold<k>/reid.safetensors``, beside the run's inversion decoder."""
    return study.paths.inversion(run, fold.index).with_name("reid.safetensors")


def train_reid_stage(
    study: _Study, fold: Fold, variant: str, arch: str, threat: str, target_key: str
) -> str:
    """Train (or find done) the fold's re-identifier; return its stage key."""
    from ..checkpoints import load_target
    from ..io import ids_hash
    from ..matching.reid import cross_fit_reconstructions, save_reid, train_reid

    run = run_name(arch, variant, threat)
    rcfg = study.config.reid_config()
    icfg = study.config.inversion_config(threat)
    pcfg = study.fold_pre_config(variant, fold)
    attack_ids, attack_cohort = study.attack_ids(fold)
    key = config_hash(
        {
            "target": target_key,
            "inversion": icfg.to_dict(),
            "reid": rcfg.to_dict(),
            **study.attack_key(fold),
        }
    )
    path = reid_path(study, run, fold)

    def work() -> list[Path]:
        check_holdout_unused(
            getattr(study, "holdout_ids", []), {f"fold {fold.index} attack set": attack_ids}
        )
        target = load_target(study.paths.target(arch, variant, fold.index), device=study.device)
        images = [study.pre(i, pcfg, attack_cohort).image for i in attack_ids]
        progress = study.stage_progress(f"fold {fold.index} {run} reid")
        recons = cross_fit_reconstructions(
            target, images, icfg, rcfg.cross_fit_folds, study.device, attack_ids, progress
        )
        net, history = train_reid(recons, images, rcfg, study.device, progress)
        meta = {
            "config": rcfg.to_dict(),
            "epoch_loss": history["epoch_loss"],
            "n_train": len(attack_ids),
            "train_ids_hash": ids_hash(list(attack_ids)),
            "fold": fold.index,
            "run": run,
        }
        return list(save_reid(path, net, meta))

    study.stages.run(f"fold{fold.index}/{run}/reid", key, work)
    return key


def reid_scorer(
    study: _Study, run: str, fold: Fold
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``reid_fn(R, C)`` for :func:`~inversion_audit.matching.pipeline.score_reconstructions`."""
    from ..matching.reid import load_reid, reid_scores

    net = load_reid(reid_path(study, run, fold), device=study.device)
    size = int(study.config.reid_config().input_size)
    return lambda R, C: reid_scores(net, list(R), list(C), size, study.device)


def reid_rows(
    study: _Study,
    run: str,
    fold: Fold,
    reconstructions: dict[str, np.ndarray],
    candidates: dict,
) -> list[tuple[str, str, str, float]]:
    """The ``reid`` rows ``(reconstruction_id, candidate_id, "reid", value)`` of one fold,
    through the one scoring pipeline with the fold's trained re-identifier."""
    from ..matching.pipeline import MatchOptions, score_reconstructions

    out = score_reconstructions(
        reconstructions,
        candidates,
        MatchOptions(metrics=("ssim", "reid")),
        device=study.device,
        reid_fn=reid_scorer(study, run, fold),
    )
    return [r for r in out.rows if r[2] == "reid"]
