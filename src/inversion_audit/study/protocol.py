"""The protocol's stages for one study: preprocess, train the target, train the inversion
decoder, reconstruct, score.

Each function computes its stage key from the config and the input files and hands its
work to ``study.stages`` (a :class:`~.stages.StageStore`), which skips it when done.
``study`` is the runner's state of one run (``runner._Study``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import Fold
from ..errors import CohortError
from ..io import config_hash, write_volume
from ..progress import report
from .holdout import check_holdout_unused
from .layout import run_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from .runner import _Study

__all__ = [
    "write_preprocessed",
    "train_target",
    "attack",
    "train_inversion_stage",
    "reconstruct_stage",
]


def write_preprocessed(study: _Study, variant: str) -> None:
    """``preprocessed/<variant>/``: every candidate (and its labels) as compared."""
    cfg = study.pre_configs[variant]
    key = config_hash({"cfg": cfg.to_dict(), "files": study.files_key(study.cohort.ids), "v": 2})

    def work() -> list[Path]:
        outs = []
        for k, s in enumerate(study.cohort):
            pre = study.pre(s.id, cfg)
            outs.append(
                write_volume(study.paths.preprocessed(variant, s.id), pre.image, pre.affine)
            )
            if pre.labels is not None:
                outs.append(
                    write_volume(
                        study.paths.preprocessed_labels(variant, s.id),
                        pre.labels.astype(np.int16),
                        pre.affine,
                    )
                )
            report(study.progress, k + 1, len(study.cohort), f"preprocess {variant}")
        return outs

    study.stages.run(f"preprocess/{variant}", key, work)


def train_target(study: _Study, fold: Fold, variant: str, arch: str) -> str:
    """Train the fold's target network on its private set; return the stage key."""
    from ..checkpoints import save_checkpoint, training_metadata
    from ..training import train_target as train
    from ..training.target import TRAINING_REVISION

    tcfg = study.config.target_config(arch)
    pcfg = study.fold_pre_config(variant, fold)
    key = config_hash(
        {
            "target": tcfg.to_dict(),
            "training_revision": TRAINING_REVISION,
            "pre": pcfg.to_dict(),
            "private": study.files_key(fold.private_set),
            "fold": fold.index,
        }
    )
    path = study.paths.target(arch, variant, fold.index)

    def work() -> list[Path]:
        check_holdout_unused(
            study.holdout_ids, {f"fold {fold.index} private set": fold.private_set}
        )
        pres = [study.pre(i, pcfg) for i in fold.private_set]
        if any(p.labels is None for p in pres):
            raise CohortError(
                f"{study.cohort.root}: training a target network needs labels for every private subject"
            )
        model, history = train(
            [p.image for p in pres],
            [p.labels for p in pres],
            tcfg,
            device=study.device,
            progress=study.stage_progress(f"fold {fold.index} {arch} {variant}"),
        )
        meta = training_metadata(tcfg, history, pcfg, list(fold.private_set))
        meta.update(fold=fold.index, variant=variant)
        return list(save_checkpoint(path, model, meta))

    study.stages.run(f"fold{fold.index}/{arch}_{variant}/target", key, work)
    return key


def attack(
    study: _Study, fold: Fold, variant: str, arch: str, threat: str, target_key: str
) -> None:
    """One run of one fold: train the inversion decoder, reconstruct, score."""
    run = run_name(arch, variant, threat)
    tpath = study.paths.target(arch, variant, fold.index)

    def load() -> Any:
        from ..checkpoints import load_target

        return load_target(tpath, device=study.device)

    inv_key = train_inversion_stage(study, fold, variant, threat, run, {"target": target_key}, load)
    rec_key = reconstruct_stage(study, fold, variant, run, inv_key, load)
    reid_key = None
    if "reid" in study.config.matching.metrics:
        from .reid_stage import train_reid_stage

        reid_key = train_reid_stage(study, fold, variant, arch, threat, target_key)
    _score(study, fold, variant, arch, threat, rec_key, reid_key)


def train_inversion_stage(
    study: _Study,
    fold: Fold,
    variant: str,
    threat: str,
    run: str,
    target_inputs: dict[str, Any],
    load: Callable[[], Any],
    metadata: dict[str, Any] | None = None,
) -> str:
    """Train ``run``'s inversion decoder on the attack set against the network ``load()`` gives.

    ``target_inputs`` is what that network depends on (hashed into the stage key);
    ``metadata`` is added to the decoder's sidecar. Returns the stage key.
    """
    from ..attack import train_inversion
    from ..checkpoints import save_checkpoint, training_metadata

    icfg = study.config.inversion_config(threat)
    pcfg = study.fold_pre_config(variant, fold)
    attack_ids, attack_cohort = study.attack_ids(fold)
    inv_key = config_hash({**target_inputs, "inversion": icfg.to_dict(), **study.attack_key(fold)})
    ipath = study.paths.inversion(run, fold.index)

    def train() -> list[Path]:
        check_holdout_unused(study.holdout_ids, {f"fold {fold.index} attack set": attack_ids})
        target = load()
        pres = [study.pre(i, pcfg, attack_cohort) for i in attack_ids]
        decoder, history = train_inversion(
            target,
            [p.image for p in pres],
            icfg,
            device=study.device,
            progress=study.stage_progress(f"fold {fold.index} {run}"),
        )
        meta = training_metadata(icfg, history, pcfg, attack_ids)
        meta.update(fold=fold.index, variant=variant, **(metadata or {}))
        return list(save_checkpoint(ipath, decoder, meta))

    study.stages.run(f"fold{fold.index}/{run}/inversion", inv_key, train)
    return inv_key


def reconstruct_stage(
    study: _Study,
    fold: Fold,
    variant: str,
    run: str,
    inv_key: str,
    load: Callable[[], Any],
    key_inputs: dict[str, Any] | None = None,
) -> str:
    """Reconstruct the fold's private set (and holdout) on both grids with ``run``'s decoder
    against the network ``load()`` gives. Returns the stage key (``key_inputs`` replaces
    what it hashes: a defended run keeps its own)."""
    from ..attack import reconstruct
    from ..checkpoints import load_inversion

    pcfg = study.fold_pre_config(variant, fold)
    ipath = study.paths.inversion(run, fold.index)
    holdout = study.holdout_of(fold)  # non-members, reconstructed by this fold's networks
    ids = [*fold.private_set, *holdout]
    rec_inputs = {"inversion": inv_key, "private": study.files_key(fold.private_set)}
    if holdout:
        rec_inputs["holdout"] = study.files_key(holdout)
    rec_key = config_hash(key_inputs or rec_inputs)
    label = f"fold {fold.index} {run}"

    def recon() -> list[Path]:
        target = load()
        decoder = load_inversion(ipath, target=target, device=study.device)
        outs = []
        for k, sid in enumerate(ids):
            pre = study.pre(sid, pcfg)
            rec = reconstruct(target, decoder, pre.image, device=study.device)
            outs.append(
                write_volume(study.paths.reconstruction(run, sid, "preprocessed"), rec, pre.affine)
            )
            outs.append(
                write_volume(study.paths.reconstruction(run, sid, "original"), pre.to_source(rec))
            )
            report(study.progress, k + 1, len(ids), f"{label}: reconstruct")
        return outs

    study.stages.run(f"fold{fold.index}/{run}/reconstruct", rec_key, recon)
    return rec_key


def _score(
    study: _Study,
    fold: Fold,
    variant: str,
    arch: str,
    threat: str,
    rec_key: str,
    reid_key: str | None = None,
    segmenter: Callable[[], Any] | None = None,
    segments: bool = True,
    own_segmentation: tuple[Callable[[np.ndarray], np.ndarray], dict | None] | None = None,
) -> None:
    """Score the run's reconstructions; ``segmenter`` loads the network the 'dice' metric
    segments with (default: the fold's target; defended runs pass their released target).
    ``segments=False`` (an external model, whose label map is not the cohort's): no Dice,
    unless ``own_segmentation`` (``segment_fn``, ``label_map``) gives the model's own
    segmentation on the project's axes, its classes the config's."""
    from ..checkpoints import load_target
    from ..io import read_volume
    from ..training import segment

    run = run_name(arch, variant, threat)
    pcfg = study.fold_pre_config(variant, fold)
    tpath = study.paths.target(arch, variant, fold.index)
    m = study.config.matching
    score_key = config_hash(
        {
            "recon": rec_key,
            "matching": m.__dict__,
            "candidates": study.files_key(study.cohort.ids),
            **({"reid": reid_key} if reid_key else {}),
            **({"own_segmentation": True} if own_segmentation else {}),
        }
    )
    ids = [*fold.private_set, *study.holdout_of(fold)]

    def score() -> list[Path]:
        from .scoring import score_fold, write_fold_scores

        recs = {
            sid: read_volume(study.paths.reconstruction(run, sid, "preprocessed")).array
            for sid in ids
        }
        cands = {s.id: study.pre(s.id, pcfg) for s in study.cohort}
        dropped = ("reid",) if segments or own_segmentation else ("reid", "dice")
        seg_args: dict[str, Any] = {}
        if own_segmentation is not None:
            seg_args = dict(zip(("segment_fn", "label_map"), own_segmentation, strict=True))
        elif segments:
            target = segmenter() if segmenter else load_target(tpath, device=study.device)
            seg_args = {
                "segment_fn": lambda img: segment(target, img, device=study.device),
                "label_map": study.config.target_config(arch).label_map,
            }
        rows, maps = score_fold(
            recs,
            cands,
            dataclasses.replace(m, metrics=[x for x in m.metrics if x not in dropped]),
            **seg_args,
            device=study.device,
            progress=study.stage_progress(f"fold {fold.index} {run}"),
            registration_workers=study.config.study.threads or os.cpu_count() or 1,
        )
        if reid_key:  # the learned re-identifier (matching/reid.py), like any pipeline metric
            from .reid_stage import reid_rows

            rows = [*rows, *reid_rows(study, run, fold, recs, cands)]
        tags = (fold.index, arch, variant, threat)
        return write_fold_scores(study.paths, tags, ids, rows, maps, cands)

    study.stages.run(f"fold{fold.index}/{run}/score", score_key, score)
