"""The stages every run goes through, undefended, defended or on an external model:
preprocess, train the target, train the inversion decoder, reconstruct, score
(Subbanna et al., Sensors 2021, Sec. 3).

Each stage function takes the plan, the run, the context (and the fold), computes its stage
key from the config, the input files and the keys of the stages it builds on, and hands its
work to ``context.stages`` (a :class:`~.stages.StageStore`), which skips it when done.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Fold
from ..errors import CohortError
from ..io import config_hash, write_volume
from ..progress import report
from .config import registration_workers
from .context import StudyContext
from .holdout import check_holdout_unused
from .network import Network, obfuscator
from .plan import Run, StudyPlan

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["write_preprocessed", "train_target", "train_inversion", "reconstruct", "score"]


def write_preprocessed(plan: StudyPlan, variant: str, ctx: StudyContext) -> None:
    """``preprocessed/<variant>/``: every candidate (and its labels) as compared."""
    cfg = plan.pre_configs[variant]
    key = config_hash({"cfg": cfg.to_dict(), "files": plan.files_key(plan.cohort.ids), "v": 2})

    def work() -> list[Path]:
        outs = []
        for k, s in enumerate(plan.cohort):
            pre = ctx.pre(plan.cohort, s.id, cfg)
            outs.append(write_volume(ctx.paths.preprocessed(variant, s.id), pre.image, pre.affine))
            if pre.labels is not None:
                labels = pre.labels.astype(np.int16)
                outs.append(
                    write_volume(ctx.paths.preprocessed_labels(variant, s.id), labels, pre.affine)
                )
            report(ctx.progress, k + 1, len(plan.cohort), f"preprocess {variant}")
        return outs

    ctx.stages.run(f"preprocess/{variant}", key, work)


def train_target(
    plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold, base_key: str | None = None
) -> str:
    """Train the target ``run`` attacks on the fold's private set; return its stage key.

    ``base_key``: the undefended target's key; a latent-noise run attacks that target (its
    key plus the noise) without training. DP-SGD trains with Opacus; obfuscation on the
    private scans obfuscated by the fold's VAE (:func:`.defended_runs.train_vae`).
    """
    from ..checkpoints import save_checkpoint, training_metadata
    from ..training import train_target as train
    from ..training.target import TRAINING_REVISION

    s = run.defence
    if s is not None and not s.retrains_target:
        return config_hash({"target": base_key, "latent_noise": s.latent_noise()})
    tcfg = plan.config.target.config(run.arch)
    pcfg = ctx.fold_pre_config(plan, run.variant, fold)
    extra: dict[str, Any] = {}
    if s is not None and s.kind == "dp-sgd":
        from ..training.dp import with_dp

        tcfg = with_dp(tcfg, s.dp_config())
    elif s is not None:
        from .defended_runs import train_vae

        extra["vae"] = train_vae(plan, run, ctx, fold)
    key = config_hash(
        {
            "target": tcfg.to_dict(),
            "training_revision": TRAINING_REVISION,
            "pre": pcfg.to_dict(),
            "private": plan.files_key(fold.private_set),
            "fold": fold.index,
            **extra,
        }
    )
    path = ctx.paths.target(run.arch, run.target_variant, fold.index)
    label = f"fold {fold.index} {run.arch} {run.variant}" + (f" {s.tag}" if s else "")

    def work() -> list[Path]:
        check_holdout_unused(plan.holdout_ids, {f"fold {fold.index} private set": fold.private_set})
        pres = [ctx.pre(plan.cohort, i, pcfg) for i in fold.private_set]
        if any(p.labels is None for p in pres):
            raise CohortError(
                f"{plan.cohort.root}: training a target network needs labels for every private subject"
            )
        images = [p.image for p in pres]
        if s is not None and s.kind == "obfuscation":
            obfuscate = obfuscator(plan, ctx, run, fold)
            images = [obfuscate(img) for img in images]
        model, history = train(
            images,
            [p.labels for p in pres],
            tcfg,
            device=ctx.device,
            progress=ctx.stage_progress(label),
        )
        meta = training_metadata(tcfg, history, pcfg, list(fold.private_set))
        meta.update(fold=fold.index, variant=run.variant)
        if s is not None:
            meta["defence"] = s.target_tag
            if history.privacy:
                meta["privacy"] = history.privacy
        return list(save_checkpoint(path, model, meta))

    ctx.stages.run(f"fold{fold.index}/{run.arch}_{run.target_variant}/target", key, work)
    return key


def train_inversion(plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold, net: Network) -> str:
    """Train the run's inversion decoder on the attack set through ``net`` as its attacker
    sees it; return the stage key."""
    from ..attack import train_inversion as train
    from ..checkpoints import save_checkpoint, training_metadata

    table = plan.config.inversion
    icfg = table.config(run.threat_model)
    pcfg = ctx.fold_pre_config(plan, run.variant, fold)
    attack_ids, attack_cohort = plan.attack_ids(fold)
    inv_key = config_hash(
        {
            **net.inversion_inputs,
            "inversion": table.stage_key(run.threat_model),
            **plan.attack_key(fold),
        }
    )
    path = ctx.paths.inversion(run.name, fold.index)

    def work() -> list[Path]:
        check_holdout_unused(plan.holdout_ids, {f"fold {fold.index} attack set": attack_ids})
        target = net.load("attack")
        pres = [ctx.pre(attack_cohort, i, pcfg) for i in attack_ids]
        decoder, history = train(
            target,
            [p.image for p in pres],
            icfg,
            device=ctx.device,
            progress=ctx.stage_progress(f"fold {fold.index} {run.name}"),
            ids=list(attack_ids),
            validation_metrics=_validation_metrics,
            **table.training_kwargs(),
        )
        meta = training_metadata(icfg, history, pcfg, attack_ids)
        meta.update(fold=fold.index, variant=run.variant, **(net.metadata or {}))
        return list(save_checkpoint(path, decoder, meta))

    ctx.stages.run(run.stage(fold, "inversion"), inv_key, work)
    return inv_key


def _validation_metrics(reconstruction: np.ndarray, original: np.ndarray) -> dict[str, float]:
    """The decoder's validation scores on held-out attack subjects: whole-volume SSIM and
    correlation, as the score stage computes them."""
    from ..metrics import correlation, ssim

    return {
        "ssim": ssim(reconstruction, original, data_range=1.0),
        "correlation": correlation(reconstruction, original),
    }


def reconstruct(
    plan: StudyPlan, run: Run, ctx: StudyContext, fold: Fold, net: Network, inv_key: str
) -> str:
    """Reconstruct the fold's private set (and holdout) on both grids from the codes ``net``
    releases; return the stage key."""
    from ..attack import reconstruct as invert
    from ..checkpoints import load_inversion

    pcfg = ctx.fold_pre_config(plan, run.variant, fold)
    path = ctx.paths.inversion(run.name, fold.index)
    holdout = plan.holdout_of(fold)  # non-members, reconstructed by this fold's networks
    ids = [*fold.private_set, *holdout]
    if run.defence is not None:
        inputs: dict[str, Any] = {"inversion": inv_key, "ids": plan.files_key(ids)}
    else:
        inputs = {"inversion": inv_key, "private": plan.files_key(fold.private_set)}
        if holdout:
            inputs["holdout"] = plan.files_key(holdout)
    label = f"fold {fold.index} {run.name}"

    def work() -> list[Path]:
        target = net.load("release")
        decoder = load_inversion(path, target=target, device=ctx.device)
        outs = []
        for k, sid in enumerate(ids):
            pre = ctx.pre(plan.cohort, sid, pcfg)
            rec = invert(target, decoder, pre.image, device=ctx.device)
            outs.append(
                write_volume(
                    ctx.paths.reconstruction(run.name, sid, "preprocessed"), rec, pre.affine
                )
            )
            outs.append(
                write_volume(
                    ctx.paths.reconstruction(run.name, sid, "original"), pre.to_source(rec)
                )
            )
            report(ctx.progress, k + 1, len(ids), f"{label}: reconstruct")
        return outs

    key = config_hash(inputs)
    ctx.stages.run(run.stage(fold, "reconstruct"), key, work)
    return key


def score(
    plan: StudyPlan,
    run: Run,
    ctx: StudyContext,
    fold: Fold,
    net: Network,
    rec_key: str,
    reid_key: str | None = None,
    own_segmentation: tuple[Callable[[np.ndarray], np.ndarray], dict | None] | None = None,
) -> None:
    """Score the run's reconstructions against every candidate (the true originals).

    The ``dice`` metric segments with the network ``net`` releases; an external model's run
    has no Dice unless ``own_segmentation`` (``segment_fn``, ``label_map``) gives the model's
    own segmentation on the project's axes, its classes the config's."""
    from ..io import read_volume
    from ..training import segment

    pcfg = ctx.fold_pre_config(plan, run.variant, fold)
    m = plan.config.matching
    key = config_hash(
        {
            "recon": rec_key,
            "matching": m.stage_key(),
            "candidates": plan.files_key(plan.cohort.ids),
            **({"reid": reid_key} if reid_key else {}),
            **({"own_segmentation": True} if own_segmentation else {}),
        }
    )
    ids = [*fold.private_set, *plan.holdout_of(fold)]
    segments = not plan.external

    def work() -> list[Path]:
        from .scoring import score_fold, write_fold_scores

        recs = {
            sid: read_volume(ctx.paths.reconstruction(run.name, sid, "preprocessed")).array
            for sid in ids
        }
        cands = {s.id: ctx.pre(plan.cohort, s.id, pcfg) for s in plan.cohort}
        dropped = (() if segments or own_segmentation else ("dice",)) + (
            () if reid_key else ("reid",)
        )
        reid_fn = None
        if reid_key:  # the fold's learned re-identifier, one scoring function of the pipeline
            from .reid_stage import reid_scorer

            reid_fn = reid_scorer(plan, run, ctx, fold)
        seg_args: dict[str, Any] = {}
        if own_segmentation is not None:
            seg_args = dict(zip(("segment_fn", "label_map"), own_segmentation, strict=True))
        elif segments:
            target = net.load("release")
            seg_args = {
                "segment_fn": lambda img: segment(target, img, device=ctx.device),
                "label_map": plan.config.target.settings.label_map,
            }
        rows, maps = score_fold(
            recs,
            cands,
            dataclasses.replace(m, metrics=[x for x in m.metrics if x not in dropped]),
            **seg_args,
            device=ctx.device,
            progress=ctx.stage_progress(f"fold {fold.index} {run.name}"),
            registration_workers=registration_workers(plan.config),
            reid_fn=reid_fn,
        )
        tags = (fold.index, run.arch, run.variant, run.threat_model)
        return write_fold_scores(ctx.paths, tags, ids, rows, maps, cands, run.defence_tag)

    ctx.stages.run(run.stage(fold, "score"), key, work)
