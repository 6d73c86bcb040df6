"""What a ``[[defences]]`` setting adds to the stages every run shares (:mod:`.protocol`).

- ``utility``: the released target's Dice on the fold's private set, undefended and per
  setting (``utility/<arch>_<variant>[_<tag>]_fold<k>.json``, with ε for DP-SGD);
- ``vae``: obfuscation's VAE, trained on the attack set, one per fold, variant and
  architecture, shared by every strength (it depends on the attack set and the ``vae_*``
  settings, not on the intensity mapping).

A defended run is a :class:`~.plan.Run` with its setting; it trains its target (DP-SGD,
obfuscation) or reuses the undefended one (latent noise) through
:func:`.protocol.train_target`, and attacks the target as its defence releases it
(:mod:`.network`). Identification is always scored against the true originals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import Fold
from ..io import atomic_write_json, config_hash
from .context import StudyContext
from .network import Network, obfuscation_config, vae_path
from .plan import Run, StudyPlan

__all__ = ["train_vae", "utility"]

# the ObfuscationConfig fields the VAE depends on (the mapping's levels and bins are not)
VAE_KEYS = ("seed", "vae_filters", "vae_latent", "vae_epochs", "vae_lr", "vae_beta")


def train_vae(plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold) -> str:
    """Train (or find done) the obfuscation VAE of the run's fold; return its stage key."""
    from ..defences.obfuscation import train_vae as train
    from ..defences.vae_io import VAE_FORMAT, save_vae

    cfg = obfuscation_config(run.defence)
    pcfg = ctx.fold_pre_config(plan, run.variant, fold)
    attack_ids, attack_cohort = plan.attack_ids(fold)
    vae_settings = {k: v for k, v in cfg.__dict__.items() if k in VAE_KEYS}
    # the weights format is keyed: a VAE saved before its sidecar held a hash is retrained
    key = config_hash(
        {"vae": vae_settings, "pre": pcfg.to_dict(), "vae_format": VAE_FORMAT}
        | plan.attack_key(fold)
    )
    path = vae_path(ctx.paths, run.arch, run.variant, fold)

    def work() -> list[Path]:
        images = [ctx.pre(attack_cohort, i, pcfg).image for i in attack_ids]
        label = f"fold {fold.index} {run.arch}_{run.variant} obfuscation"
        vae, _ = train(images, cfg, device=ctx.device, progress=ctx.stage_progress(label))
        return save_vae(path, vae, cfg)

    ctx.stages.run(f"fold{fold.index}/{run.arch}_{run.variant}_obfuscation/vae", key, work)
    return key


def utility(
    plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold, net: Network, key: str
) -> None:
    """The released target's Dice on the fold's private set and holdout (what the defence
    costs); ``key``: the target's stage key."""
    from ..checkpoints import read_metadata
    from ..metrics.dice import dice_baseline
    from ..training import segment
    from ..training.target import apply_label_map

    tag = run.defence.tag if run.defence else None
    path = ctx.paths.utility(run.arch, run.variant, fold.index, tag or "")
    label_map = plan.config.target.settings.label_map
    pcfg = ctx.fold_pre_config(plan, run.variant, fold)
    holdout = plan.holdout_of(fold)
    target_path = ctx.paths.target(run.arch, run.target_variant, fold.index)

    def work() -> list[Path]:
        target = net.load("release")
        dice: dict[str, float] = {}
        for sid in [*fold.private_set, *holdout]:
            pre = ctx.pre(plan.cohort, sid, pcfg)
            if pre.labels is None:
                continue
            truth = apply_label_map(pre.labels, label_map, sid)
            _, dice[sid] = dice_baseline(
                lambda img: segment(target, img, device=ctx.device), pre.image, truth
            )
        privacy = read_metadata(target_path).get("privacy") if run.defence else None
        record = {
            "arch": run.arch,
            "variant": run.variant,
            "fold": fold.index,
            "defence": tag,
            "dice": {k: _num(v) for k, v in dice.items() if k not in holdout},
            "holdout_dice": {k: _num(v) for k, v in dice.items() if k in holdout},
            "privacy": privacy,
        }
        return [atomic_write_json(path, record)]

    ctx.stages.run(
        f"fold{fold.index}/{run.arch}_{run.variant}{'_' + tag if tag else ''}/utility",
        config_hash({"target": key, "ids": plan.files_key([*fold.private_set, *holdout])}),
        work,
    )


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
