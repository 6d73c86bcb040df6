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
from .context import StudyContext
from .holdout import check_holdout_unused
from .network import Network
from .plan import Run, StudyPlan

if TYPE_CHECKING:
    from ..attack.config import InversionConfig
    from ..matching.reid_scorer import ReidScorer
    from ..progress import ProgressCallback

__all__ = ["reid_path", "train_reid_stage", "reid_scorer"]


def reid_path(ctx: StudyContext, run: Run, fold: Fold) -> Path:
    """``checkpoints/<run>/fold<k>/reid.safetensors``, beside the run's inversion decoder."""
    return ctx.paths.reid(run.name, fold.index)


def train_reid_stage(plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold, net: Network) -> str:
    """Train (or find done) the run's re-identifier in ``fold`` through ``net`` as the run's
    attacker sees it (a defended run's attacker trains its own); return its stage key."""
    from ..io import ids_hash
    from ..matching.pipeline import brain_mask
    from ..matching.reid import train_reid
    from ..matching.reid_io import save_reid
    from ..matching.reid_patches import train_patch_reid

    rcfg = plan.config.reid.settings
    icfg = plan.config.inversion.config(run.threat_model)
    pcfg = ctx.fold_pre_config(plan, run.variant, fold)
    attack_ids, attack_cohort = plan.attack_ids(fold)
    target_key = net.reid_key
    key = config_hash(
        {
            "target": target_key,
            "inversion": icfg.to_dict(),
            "reid": rcfg.to_dict(),
            **plan.attack_key(fold),
        }
    )
    path = reid_path(ctx, run, fold)
    # the cross-fitted reconstructions depend on neither the reid network nor its training
    crossfit_key = config_hash(
        {
            "target": target_key,
            "inversion": icfg.to_dict(),
            "cross_fit_folds": rcfg.cross_fit_folds,
            **plan.attack_key(fold),
        }
    )

    def work() -> list[Path]:
        check_holdout_unused(plan.holdout_ids, {f"fold {fold.index} attack set": attack_ids})
        pres = [ctx.pre(attack_cohort, i, pcfg) for i in attack_ids]
        images = [p.image for p in pres]
        progress = ctx.stage_progress(f"fold {fold.index} {run.name} reid")
        recons = _cross_fitted(
            ctx.paths.crossfit(run.name, fold.index, crossfit_key[:16]),
            lambda: net.load("attack"),
            images,
            list(attack_ids),
            icfg,
            rcfg.cross_fit_folds,
            ctx.device,
            progress,
        )
        if rcfg.mode == "patches":
            masks = [brain_mask(p) for p in pres]
            net_, history = train_patch_reid(recons, images, masks, rcfg, ctx.device, progress)
        else:
            net_, history = train_reid(recons, images, rcfg, ctx.device, progress)
        meta = {
            "config": rcfg.to_dict(),
            "epoch_loss": history["epoch_loss"],
            "n_train": len(attack_ids),
            "train_ids_hash": ids_hash(list(attack_ids)),
            "fold": fold.index,
            "run": run.name,
        }
        return list(save_reid(path, net_, meta))

    ctx.stages.run(run.stage(fold, "reid"), key, work)
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


def reid_scorer(plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold) -> ReidScorer:
    """The fold's trained re-identifier in the study's ``[reid] mode``, as a scoring function
    of :func:`~inversion_audit.matching.pipeline.score_reconstructions` (``reid_fn``)."""
    from ..matching.reid_io import load_reid
    from ..matching.reid_scorer import ReidScorer

    path = reid_path(ctx, run, fold)
    net = load_reid(path, device=ctx.device)
    return ReidScorer(net, plan.config.reid.settings, ctx.device, str(path))
