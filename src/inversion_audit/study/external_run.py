"""A study's run on an external model (``[model]``): no k-fold, no target training.

The members (``model.members`` / ``members_file``) are the private set; the attack set is
the cohort's other subjects (or ``cohort.attack_path``), less the non-member holdout
(``[cohort] holdout`` / ``holdout_n`` / ``holdout_path``), which trains neither the model
(a member in it is refused) nor the decoder. For each variant and threat model the
inversion decoder is trained against the frozen external network, the members and the
holdout are reconstructed, and every reconstruction is scored against every candidate in
one gallery, as in the paper's runs. The run is named ``external_<variant>_<threat>`` (fold 0);
``external_model.json`` records the model, its tapped latent and where the preprocessing
differs from the model's own; the report shows it. With the ``dice`` metric, the model's
own segmentation is scored (Dice of members and holdout, the membership signal 1 - Dice)
when its output classes are the config's (``target.label_map``: background + groups), and
recorded as not comparable otherwise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data import Fold
from ..errors import ConfigError, StudyError
from ..io import atomic_write_json, config_hash
from ..io.untrusted import read_json
from . import protocol
from .holdout import assign_holdout, check_holdout_unused, holdout_key
from .layout import run_name
from .model_source import ModelSource, model_path, parse_model_source, resolve_members

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ..models.external import ExternalModel
    from .runner import _Study

__all__ = ["RECORD", "check_external", "external_fold", "external_markdown", "run_external"]

RECORD = "external_model.json"
ARCH = "external"


def external_fold(study: _Study, source: ModelSource) -> Fold:
    """Fold 0: the members as the private set, the cohort's other subjects (less the holdout)
    as the attack set."""
    holdout = (study.holdout_ids, holdout_key(study.config))
    members = resolve_members(source, study.cohort.ids, study.config.source, holdout)
    unused = {*members, *study.holdout_ids}
    others = tuple(sorted(i for i in study.cohort.ids if i not in unused))
    if not others and study.attack_cohort is None:
        raise ConfigError(
            f"{study.config.source or 'config'}: model.members holds every cohort subject; "
            "the attack set is empty (add subjects or set cohort.attack_path)"
        )
    return Fold(0, members, others)


def _load(study: _Study, source: ModelSource, variant: str) -> ExternalModel:
    """The external model on the variant's grid; nnU-Net's own preprocessing replaces the study's."""
    from ..models.external import load_external

    path = model_path(source.path, study.config.source)
    if not path.exists():
        raise ConfigError(
            f"{study.config.source or 'config'}: model.path = {source.path!r}: not found at {path}"
        )
    grid = study.pre_configs[variant].shape
    where = study.config.source or "config"
    try:
        model = load_external(
            source.source,
            path,
            network=source.network,
            network_args=source.network_args,
            fold=source.fold,
            grid=grid,
            latent=source.latent,
        )
    except ConfigError as exc:  # name the study config as well as the model's files
        raise ConfigError(f"{where}: [model] {exc}") from exc
    if model.in_channels != 1:
        raise ConfigError(
            f"{where}: [model] {model.channels_key}: the cohort gives one image per subject; "
            f"this model ({model.weights}) takes {model.in_channels}"
        )
    if model.preprocess is not None:  # nnU-Net: the plans' spacing and patch size
        base = study.pre_configs[variant]
        study.pre_configs[variant] = dataclasses.replace(
            model.preprocess, skull_strip=base.skull_strip, intensity=base.intensity
        )
    elif tuple(model.grid) != tuple(grid):
        raise ConfigError(f"{path}: model grid {model.grid} is not the preprocessing shape {grid}")
    return model


def _config_classes(study: _Study, fold: Fold, variant: str, tcfg: Any) -> int | None:
    """The classes the config's labels give (background included); ``None`` without labels."""
    if tcfg.n_classes is not None:
        return tcfg.n_classes
    if tcfg.label_map:
        return max(tcfg.label_map.values()) + 1
    pcfg = study.fold_pre_config(variant, fold)
    labels = [study.pre(i, pcfg).labels for i in fold.private_set]
    if any(lab is None for lab in labels):
        return None
    return max(2, max(int(lab.max()) for lab in labels) + 1)  # as training a target counts them


def own_segmentation(
    study: _Study, model: ExternalModel, fold: Fold, variant: str
) -> tuple[tuple[Callable[[np.ndarray], np.ndarray], dict | None] | None, str | None]:
    """The model's own segmentation for the ``dice`` metric, and the record's sentence.

    ``((segment_fn, label_map), sentence)`` when the model's output classes are the
    config's, ``(None, sentence)`` when not comparable, ``(None, None)`` without ``dice``.
    """
    import numpy as np
    import torch

    from ..models import ARCHITECTURES
    from ..training import segment

    if "dice" not in study.config.matching.metrics:
        return None, None
    # label_map and n_classes are the [target] table's, whatever the architecture
    tcfg = study.config.target_config(next(iter(ARCHITECTURES)))
    wanted = _config_classes(study, fold, variant, tcfg)
    if wanted is None:
        return None, "not comparable: the cohort has no labels for the members"
    target = model.target()
    device = next(target.parameters()).device
    with torch.no_grad():  # one forward pass on the model's grid counts its output classes
        out = target(torch.zeros((1, model.in_channels, *model.grid), device=device))
    given = int((out[0] if isinstance(out, list | tuple) else out).shape[1])
    if given != wanted:
        return None, (
            f"not comparable: the model gives {given} classes, the config's labels "
            f"(target.label_map: background + groups) {wanted}; no Dice"
        )
    back = tuple(int(a) for a in np.argsort(model.axes))  # network axes -> the project's

    def segment_fn(image: np.ndarray) -> np.ndarray:
        return np.transpose(segment(target, image, device=study.device), back)

    return (segment_fn, tcfg.label_map), f"the model's own segmentation ({given} classes)"


def check_external(study: _Study) -> None:
    """Before anything is written: the members, the holdout and the model of every variant.

    Sets the study's one fold and holdout and keeps each variant's loaded model in
    ``study.external_models`` for :func:`run_external`.
    """
    source = parse_model_source(study.config.model)
    fold = external_fold(study, source)
    study.folds = [fold]
    study.holdout_by_fold = assign_holdout(study.holdout_ids, study.folds)
    check_holdout_unused(  # before any training: the model's members and the decoder's set
        study.holdout_ids,
        {
            "model's members (the private set)": fold.private_set,
            "fold 0 attack set": study.attack_ids(fold)[0],
        },
    )
    study.external_models = {v: _load(study, source, v) for v in study.config.variants}


def run_external(study: _Study) -> None:
    """Every stage of the external run, in order (resumable like the protocol's)."""
    if not study.external_models:
        check_external(study)
    fold = study.folds[0]
    attack_ids = study.attack_ids(fold)[0]
    record: dict[str, Any] = {"members": len(fold.private_set), "attack": len(attack_ids)}
    if study.holdout_ids:
        record["holdout"] = len(study.holdout_ids)
    for variant in study.config.variants:
        model = study.external_models[variant]
        record[variant] = model.describe()
        protocol.write_preprocessed(study, variant)
        own, dice_note = own_segmentation(study, model, fold, variant)
        if dice_note:
            record[variant]["dice"] = dice_note
        model_key = config_hash({"model": model.describe(), "fold": fold.private_set})
        pcfg = study.fold_pre_config(variant, fold)
        inputs = {"model": model_key, "pre": pcfg.to_dict()}
        meta = {"external_model": model.describe()}
        for threat in study.config.threat_models:
            run = run_name(ARCH, variant, threat)
            inv_key = protocol.train_inversion_stage(
                study, fold, variant, threat, run, inputs, model.target, meta
            )
            rec_key = protocol.reconstruct_stage(study, fold, variant, run, inv_key, model.target)
            protocol._score(
                study, fold, variant, ARCH, threat, rec_key, segments=False, own_segmentation=own
            )
    if not study.stages.dry_run:
        atomic_write_json(study.paths.root / RECORD, record)


def external_markdown(study_dir: str | Path) -> list[str]:
    """The report's "Model audited" section (empty for the paper's protocol)."""
    path = Path(study_dir) / RECORD
    if not path.is_file():
        return []
    record = read_json(path, StudyError, "external model record")
    if not isinstance(record, dict):
        raise StudyError(f"{path}: the external model record must be a JSON object")
    lines = ["## Model audited", ""]
    for variant, m in record.items():
        if not isinstance(m, dict):
            continue
        lat = m["latent"]
        lines.append(
            f"- {variant}: {m['source']} model {m['network']} ({m['weights_file']}, sha256 "
            f"{m['weights_sha256']}), input {m['in_channels']} x {' x '.join(map(str, m['grid']))}; "
            f"latent tapped at module `{lat['module']}`, shape {lat['shape']}"
            + (f"; skips at {', '.join(f'`{s}`' for s in lat['skips'])}" if lat["skips"] else "")
        )
        lines += [f"  - preprocessing differs: {d}" for d in m.get("preprocess_differences", [])]
        if m.get("dice"):
            lines.append(f"  - Dice: {m['dice']}")
    lines += [
        f"- {record.get('members', '?')} members (the private set), {record.get('attack', '?')} "
        "attack subjects"
        + (
            f", {record['holdout']} non-members (the holdout: reconstructed and ranked with the "
            "members, trained on by neither the model nor the decoder)"
            if record.get("holdout")
            else ""
        )
        + "; no k-fold retraining.",
        "",
    ]
    return lines
