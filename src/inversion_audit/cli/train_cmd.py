"""``train-target``, ``train-inversion`` and ``reconstruct``: the attack, one step per command.

``train-target`` trains a target network on the private set and writes
``OUT/target.safetensors`` + ``target.json``; ``train-inversion`` trains the inversion
decoder against a target on the attack set (``OUT/inversion.*``); ``reconstruct``
writes ``OUT/<id>_recon.nii.gz`` (the subject's original grid) and
``OUT/<id>_recon_pre.nii.gz`` (the preprocessed grid). Settings come from flags, or
from ``--config FILE.toml`` with ``[target]``, ``[inversion]`` and ``[preprocess]``
tables (flags override it).

Validate, then write: each command reads and checks its config, checkpoints, subject ids and
every subject's files (headers and voxels) before it writes to ``--out`` or to the
preprocessing cache; a refusal leaves both as they were.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data import (
    DEFAULT_IMAGE_PATTERN,
    DEFAULT_LABELS_PATTERN,
    PreprocessConfig,
    config_with_nyul,
    preprocess_subject,
    save_pending,
)
from ..errors import CohortError, ConfigError
from ..io.paths import check_output_folder, output_path
from ..io.untrusted import read_json, read_toml
from ..models import ARCHITECTURES
from .common import (
    add_device_args,
    add_quiet_arg,
    check_subjects,
    fail,
    load_cohort_arg,
    setup_logging,
    split_ids,
)

if TYPE_CHECKING:
    from ..data import Subject
    from ..training import TargetConfig

__all__ = ["register"]

#: the two files ``reconstruct`` writes per subject, and its record of what is complete
RECON_SUFFIXES = ("_recon.nii.gz", "_recon_pre.nii.gz")
RECORD = "reconstruct.json"

#: flag name -> TargetConfig field
TARGET_FLAGS = {
    "depth": "depth",
    "filters": "base_filters",
    "kernel": "kernel_size",
    "pool": "pool_size",
    "norm": "norm",
    "epochs": "epochs",
    "lr": "lr",
    "batch_size": "batch_size",
    "seed": "seed",
    "val_fraction": "val_fraction",
    "patience": "patience",
}
INVERSION_FLAGS = {
    "threat_model": "threat_model",
    "epochs": "epochs",
    "lr": "lr",
    "batch_size": "batch_size",
    "seed": "seed",
    "ssim_weight": "ssim_weight",
    "gradient_weight": "gradient_weight",
    "flip_augment": "flip_augment",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cohort", required=True, help="cohort folder or CSV manifest")
    p.add_argument(
        "--subjects", nargs="+", help="subject ids (space or comma separated; default: all)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--image-pattern", default=DEFAULT_IMAGE_PATTERN)
    p.add_argument("--labels-pattern", default=DEFAULT_LABELS_PATTERN)
    add_device_args(p)
    add_quiet_arg(p)


def _training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with [target]/[inversion]/[preprocess] tables")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train-target", help="train a target segmentation network on the private set"
    )
    t.add_argument(
        "--arch", choices=list(ARCHITECTURES), help="architecture (default: unet or the config's)"
    )
    _common(t)
    _training(t)
    t.add_argument("--depth", type=int, help="n: pooling steps")
    t.add_argument("--filters", type=int, help="z: base filters, doubled per level")
    t.add_argument("--kernel", type=int, help="x: convolution size")
    t.add_argument("--pool", type=int, help="y: pooling size")
    t.add_argument("--norm", choices=["batch", "instance", "none"])
    t.add_argument("--val-fraction", type=float)
    t.add_argument("--patience", type=int)
    t.add_argument(
        "--label-map", help="JSON/TOML file with label_map {label: class} or label_groups"
    )
    t.add_argument("--spacing", type=float, nargs="+", help="voxel size in mm (1 or 3 values)")
    t.add_argument(
        "--shape", type=int, nargs=3, help="preprocessed grid size (default: fits every subject)"
    )
    t.add_argument("--skull-strip", choices=["none", "labels", "mask"])
    t.add_argument("--intensity", choices=["percentile", "nyul", "none"])
    t.add_argument(
        "--bias-correction",
        action=argparse.BooleanOptionalAction,
        help="N4 with ANTs (default: on)",
    )
    t.set_defaults(handler=_train_target)

    i = sub.add_parser(
        "train-inversion", help="train an inversion decoder against a target on the attack set"
    )
    i.add_argument(
        "--target", required=True, help="target checkpoint (.safetensors with .json sidecar)"
    )
    _common(i)
    _training(i)
    i.add_argument("--threat-model", choices=["bottleneck", "bottleneck+skips"])
    i.add_argument("--ssim-weight", type=float)
    i.add_argument("--gradient-weight", type=float)
    i.add_argument("--flip-augment", action="store_true", default=None)
    i.set_defaults(handler=_train_inversion)

    r = sub.add_parser(
        "reconstruct", help="reconstruct subjects from their latent codes (writes NIfTI)"
    )
    r.add_argument("--target", required=True, help="target checkpoint")
    r.add_argument("--inversion", required=True, help="inversion decoder checkpoint")
    _common(r)
    r.set_defaults(handler=_reconstruct)


def _read_table_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if p.suffix == ".toml":
        return read_toml(p, ConfigError, "config")
    data = read_json(p, ConfigError, "config")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object, got {type(data).__name__}")
    return data


def _section(config: dict[str, Any], name: str, path: str | None) -> dict[str, Any]:
    value = config.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return dict(value)


def _overrides(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    return {
        field: getattr(args, flag)
        for flag, field in flags.items()
        if getattr(args, flag, None) is not None
    }


def _preprocess_config(args: argparse.Namespace, table: dict[str, Any]) -> dict[str, Any]:
    data = dict(table)
    if args.spacing:
        data["spacing"] = tuple(args.spacing) if len(args.spacing) == 3 else (args.spacing[0],) * 3
    if args.shape:
        data["shape"] = tuple(args.shape)
    for flag in ("skull_strip", "intensity", "bias_correction"):
        if getattr(args, flag) is not None:
            data[flag] = getattr(args, flag)
    return data


def _cohort_subjects(args: argparse.Namespace):
    cohort = load_cohort_arg(args.cohort, args.image_pattern, args.labels_pattern)
    ids = split_ids(args.subjects) or cohort.ids
    return [cohort[i] for i in ids]


def _fixed_shape(subjects, config: PreprocessConfig, pending: list) -> PreprocessConfig:
    """With no shape given, the smallest grid (divisible as required) that holds every subject;
    new cache entries are held in ``pending`` until the grid has been checked."""
    if config.shape is not None:
        return config
    shapes = [preprocess_subject(s, config, pending=pending).shape for s in subjects]
    return dataclasses.replace(config, shape=tuple(max(sh[a] for sh in shapes) for a in range(3)))


def _check_trainable(
    config: TargetConfig, pre_config: PreprocessConfig, subjects: list[Subject]
) -> None:
    """Refuse, before preprocessing writes the cache, what training would refuse later: a grid
    the network cannot take, labels outside the label map or beyond ``n_classes``."""
    from ..io import read_labels

    multiple = config.multiple
    if pre_config.shape is not None:
        if any(s % multiple for s in pre_config.shape):
            raise ConfigError(
                f"preprocess shape {tuple(pre_config.shape)} is not divisible by {multiple} "
                "(pool_size ** depth)"
            )
        if config.patch_size is not None and any(
            p > s for p, s in zip(config.patch_size, pre_config.shape, strict=True)
        ):
            raise ConfigError(
                f"patch_size {config.patch_size} is larger than the grid {pre_config.shape}"
            )
    elif pre_config.divisible_by % multiple:
        raise ConfigError(
            f"preprocess divisible_by {pre_config.divisible_by} is not a multiple of {multiple} "
            "(pool_size ** depth)"
        )
    allowed = None if config.label_map is None else {0, *config.label_map}
    for subject in subjects:
        present = {int(v) for v in np.unique(read_labels(subject.labels).array)}
        if allowed is not None and present - allowed:
            raise CohortError(
                f"{subject.labels}: labels {sorted(present - allowed)[:10]} are not in the label map"
            )
        top = max(config.label_map.values()) if config.label_map else max(present)
        if config.n_classes is not None and top >= config.n_classes:
            raise CohortError(
                f"{subject.labels}: labels reach class {top} but n_classes is {config.n_classes}"
            )


def _train_target(args: argparse.Namespace) -> int:
    from ..checkpoints import save_checkpoint, training_metadata
    from ..data import preprocess_cohort
    from ..devices import set_threads
    from ..progress import tqdm_progress
    from ..training import TargetConfig, train_target

    setup_logging(args.quiet)
    set_threads(args.threads)
    file_config = _read_table_file(args.config) if args.config else {}
    target_table = _section(file_config, "target", args.config)
    target_table.update(_overrides(args, TARGET_FLAGS))
    if args.arch:
        target_table["arch"] = args.arch
    if args.label_map:
        table = _read_table_file(args.label_map)
        target_table["label_map"] = table.get("label_map", table.get("label_groups", table))
    config = TargetConfig.from_dict(target_table)
    pre_table = _preprocess_config(args, _section(file_config, "preprocess", args.config))
    pre_table.setdefault("divisible_by", config.multiple)
    pre_config = PreprocessConfig.from_dict(pre_table)
    check_output_folder(args.out, ("target.safetensors", "target.json"))
    subjects = _cohort_subjects(args)
    missing = [s.id for s in subjects if s.labels is None]
    if missing:
        raise CohortError(
            f"{args.cohort}: training a target needs labels; none for {', '.join(missing)}"
        )
    check_subjects(subjects, pre_config.skull_strip, args.cohort, require_labels=True)
    _check_trainable(config, pre_config, subjects)
    pending: list = []
    pre_config = _fixed_shape(subjects, config_with_nyul(pre_config, subjects), pending)
    _check_trainable(config, pre_config, [])  # the computed grid against the patch size
    save_pending(pending)
    with tqdm_progress(args.quiet) as progress:
        pres = preprocess_cohort(subjects, pre_config, progress=progress)
        try:
            model, history = train_target(
                [p.image for p in pres],
                [p.labels for p in pres],
                config,
                device=args.device,
                progress=progress,
                ids=[p.subject_id for p in pres],
            )
        except ValueError as exc:
            return fail(str(exc), 1)
    ids = [s.id for s in subjects]
    weights, _ = save_checkpoint(
        Path(args.out) / "target", model, training_metadata(config, history, pre_config, ids)
    )
    print(
        f"target {config.arch}: {len(ids)} subjects, final loss {history.final_loss:.4f}, {history.seconds:.0f} s"
    )
    print(f"wrote {weights}")
    return 0


def _train_inversion(args: argparse.Namespace) -> int:
    from ..attack import InversionConfig, train_inversion
    from ..checkpoints import (
        load_target,
        preprocess_config,
        save_checkpoint,
        state_hash,
        training_metadata,
    )
    from ..data import preprocess_cohort
    from ..devices import set_threads
    from ..progress import tqdm_progress

    setup_logging(args.quiet)
    set_threads(args.threads)
    file_config = _read_table_file(args.config) if args.config else {}
    table = _section(file_config, "inversion", args.config)
    table.update(_overrides(args, INVERSION_FLAGS))
    config = InversionConfig.from_dict(table)
    target = load_target(args.target)
    pre_config = preprocess_config(target.metadata)
    if pre_config is None:
        return fail(
            f"{args.target}: sidecar has no preprocess config to prepare the attack set with", 1
        )
    check_output_folder(args.out, ("inversion.safetensors", "inversion.json"))
    subjects = _cohort_subjects(args)
    check_subjects(subjects, pre_config.skull_strip, args.cohort)
    with tqdm_progress(args.quiet) as progress:
        pres = preprocess_cohort(subjects, pre_config, progress=progress)
        try:
            decoder, history = train_inversion(
                target,
                [p.image for p in pres],
                config,
                device=args.device,
                progress=progress,
                ids=[p.subject_id for p in pres],
            )
        except ValueError as exc:
            return fail(str(exc), 1)
    meta = training_metadata(config, history, pre_config, [s.id for s in subjects])
    meta["target_weights_sha256"] = state_hash(target)
    weights, _ = save_checkpoint(Path(args.out) / "inversion", decoder, meta)
    print(
        f"inversion decoder ({config.threat_model}): final loss {history.final_loss:.5f}, {history.seconds:.0f} s"
    )
    print(f"wrote {weights}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from ..attack import reconstruct_subject
    from ..checkpoints import load_inversion, load_target
    from ..data.sidecar import preprocess_config
    from ..devices import set_threads
    from ..io import atomic_write_json
    from ..progress import report, tqdm_progress

    setup_logging(args.quiet)
    set_threads(args.threads)
    target = load_target(args.target)
    decoder = load_inversion(args.inversion, target=target)
    # load_inversion refused a decoder preprocessed unlike its target
    pre_config = preprocess_config(decoder.metadata) or preprocess_config(target.metadata)
    if pre_config is None:
        return fail(f"{args.inversion}: sidecar has no preprocess config", 1)
    subjects = _cohort_subjects(args)
    out = Path(args.out)
    # everything is checked before the first write: the folder, every output name, every file
    names = [f"{s.id}{suffix}" for s in subjects for suffix in RECON_SUFFIXES]
    check_output_folder(out, (*names, RECORD))
    check_subjects(subjects, pre_config.skull_strip, args.cohort)
    done: list[str] = []
    with tqdm_progress(args.quiet) as progress:
        try:
            for k, subject in enumerate(subjects):
                reconstruct_subject(target, decoder, subject, pre_config, args.device, out_dir=out)
                done.append(subject.id)
                report(progress, k + 1, len(subjects), "reconstruct")
        except BaseException as exc:
            # partial by necessity: say so, and record which subjects are complete
            pending = [s.id for s in subjects if s.id not in done]
            atomic_write_json(
                output_path(out, RECORD),
                {"complete": False, "done": done, "not_done": pending, "error": str(exc)},
            )
            print(
                f"inversion-audit: reconstructed {len(done)} of {len(subjects)} subjects before "
                f"stopping; {output_path(out, RECORD)} lists them",
                file=sys.stderr,
            )
            raise
    atomic_write_json(output_path(out, RECORD), {"complete": True, "done": done, "not_done": []})
    print(f"wrote {2 * len(subjects)} reconstructions to {out}")
    return 0
