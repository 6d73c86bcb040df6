"""The study's ``reid`` stage: the attacker's Siamese re-identifier, trained per fold and run.

Trained on the fold's attack set only (cross-fitted decoder reconstructions paired with their
originals, :mod:`inversion_audit.matching.reid`), saved next to the run's inversion decoder
as ``reid.safetensors`` + ``reid.json``, and used by the score stage as the ``reid`` metric.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Fold
from ..io import config_hash
from .holdout import check_holdout_unused
from .layout import run_name

if TYPE_CHECKING:
    from ..attack.config import InversionConfig
    from ..progress import ProgressCallback
    from .runner import _Study

__all__ = ["reid_path", "train_reid_stage", "reid_scorer", "reid_rows"]


def reid_path(study: _Study, run: str, fold: Fold) -> Path:
    """``checkpoints/<run>/fold<k>/reid.safetensors``, beside the run's inversion decoder."""
    return study.paths.inversion(run, fold.index).with_name("reid.safetensors")


def train_reid_stage(
    study: _Study,
    fold: Fold,
    variant: str,
    arch: str,
    threat: str,
    target_key: str,
    run: str | None = None,
    load_target_model: Callable[[], Any] | None = None,
) -> str:
    """Train (or find done) the fold's re-identifier; return its stage key.

    ``run`` and ``load_target_model`` name a defended run and the target as its attacker sees
    it (``target_key`` then covers the defence); default: the undefended run and target."""
    from ..checkpoints import load_target
    from ..io import ids_hash
    from ..matching.pipeline import brain_mask
    from ..matching.reid import save_reid, train_reid
    from ..matching.reid_patches import train_patch_reid

    run = run or run_name(arch, variant, threat)
    if load_target_model is None:
        tpath = study.paths.target(arch, variant, fold.index)
        load_target_model = lambda: load_target(tpath, device=study.device)  # noqa: E731
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
    # the cross-fitted reconstructions depend on neither the reid network nor its training
    crossfit_key = config_hash(
        {
            "target": target_key,
            "inversion": icfg.to_dict(),
            "cross_fit_folds": rcfg.cross_fit_folds,
            **study.attack_key(fold),
        }
    )

    def work() -> list[Path]:
        check_holdout_unused(
            getattr(study, "holdout_ids", []), {f"fold {fold.index} attack set": attack_ids}
        )
        pres = [study.pre(i, pcfg, attack_cohort) for i in attack_ids]
        images = [p.image for p in pres]
        progress = study.stage_progress(f"fold {fold.index} {run} reid")
        recons = _cross_fitted(
            path.with_name(f"crossfit-{crossfit_key[:16]}.npz"),
            load_target_model,
            images,
            list(attack_ids),
            icfg,
            rcfg.cross_fit_folds,
            study.device,
            progress,
        )
        if rcfg.mode == "patches":
            masks = [brain_mask(p) for p in pres]
            net, history = train_patch_reid(recons, images, masks, rcfg, study.device, progress)
        else:
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


def _cross_fitted(
    path: Path,
    load_target_model: Callable[[], Any],
    images: list[np.ndarray],
    ids: list[str],
    icfg: InversionConfig,
    folds: int,
    device: str,
    progress: ProgressCallback | None,
) -> list[np.ndarray]:
    """The attack set's cross-fitted reconstructions, cached in ``path`` (an ``.npz`` named by
    the key of everything they depend on, read with ``allow_pickle=False``), so that
    retraining the re-identifier alone reuses the decoders' work. Stored as float16 (the
    images lie in [0, 1]), about 2 MB per reconstruction at ixi-dev's grid."""
    import io

    from ..io import atomic_write_bytes
    from ..matching.reid import cross_fit_reconstructions

    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            recons = data["reconstructions"]
        if recons.shape == (len(images), *np.shape(images[0])):
            return list(recons.astype(np.float32))
    target = load_target_model()
    recons = cross_fit_reconstructions(target, images, icfg, folds, device, ids, progress)
    buf = io.BytesIO()
    np.savez_compressed(buf, reconstructions=np.stack(recons).astype(np.float16))
    for old in path.parent.glob("crossfit-*.npz"):
        old.unlink()
    atomic_write_bytes(path, buf.getvalue())
    return recons


def reid_scorer(
    study: _Study, run: str, fold: Fold
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """``reid_fn(R, C, brains)`` for
    :func:`~inversion_audit.matching.pipeline.score_reconstructions`: the fold's re-identifier
    in the study's ``[reid] mode``."""
    from ..matching.reid import load_reid, reid_scores
    from ..matching.reid_patches import patch_reid_scores

    net = load_reid(reid_path(study, run, fold), device=study.device)
    rcfg = study.config.reid_config()
    if rcfg.mode == "patches":
        return lambda R, C, brains: patch_reid_scores(net, R, C, brains, rcfg, study.device)
    return lambda R, C, brains: reid_scores(net, list(R), list(C), rcfg.input_size, study.device)


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
