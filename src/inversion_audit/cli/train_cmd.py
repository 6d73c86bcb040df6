"""``train-target``: the attack's first step, a target network trained on the private set.

It writes ``OUT/target.safetensors`` + ``target.json``. Settings come from flags, or from
``--config FILE.toml`` with ``[target]`` and ``[preprocess]`` tables (flags override it).
``train-inversion`` and ``reconstruct`` are in :mod:`.inversion_cmd`; the helpers
``add_cohort_args``, ``add_training_args``, ``section``, ``overrides`` and ``fixed_shape``
are shared with it.

Validate, then write: the config, subject ids and every subject's files (headers and voxels)
are read and checked before it writes to ``--out`` or to the preprocessing cache; a refusal
leaves both as they were.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from ..io.paths import check_output_folder
from ..models import ARCHITECTURES
from .common import (
    add_device_args,
    add_preprocess_args,
    add_quiet_arg,
    check_subjects,
    cohort_subjects,
    fail,
    preprocess_table,
    read_table_file,
    setup_logging,
)

if TYPE_CHECKING:
    from ..data import Subject
    from ..training import TargetConfig

__all__ = [
    "add_cohort_args",
    "add_training_args",
    "fixed_shape",
    "overrides",
    "register",
    "section",
]

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


def add_cohort_args(p: argparse.ArgumentParser) -> None:
    """``--cohort``, ``--subjects``, ``--out``, the file patterns, device and quiet flags."""
    p.add_argument("--cohort", required=True, help="cohort folder or CSV manifest")
    p.add_argument(
        "--subjects", nargs="+", help="subject ids (space or comma separated; default: all)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--image-pattern", default=DEFAULT_IMAGE_PATTERN)
    p.add_argument("--labels-pattern", default=DEFAULT_LABELS_PATTERN)
    add_device_args(p)
    add_quiet_arg(p)


def add_training_args(p: argparse.ArgumentParser) -> None:
    """``--config`` and the flags every training takes."""
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
    add_cohort_args(t)
    add_training_args(t)
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
    add_preprocess_args(t)
    t.set_defaults(handler=_train_target)


def section(config: dict[str, Any], name: str, path: str | None) -> dict[str, Any]:
    """Table ``[name]`` of a ``--config`` file (empty when absent)."""
    value = config.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return dict(value)


def overrides(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    """The config fields the flags given set (``flags``: flag name -> field)."""
    return {
        field: getattr(args, flag)
        for flag, field in flags.items()
        if getattr(args, flag, None) is not None
    }


def fixed_shape(
    subjects: list[Subject], config: PreprocessConfig, pending: list
) -> PreprocessConfig:
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
    file_config = read_table_file(args.config) if args.config else {}
    target_table = section(file_config, "target", args.config)
    target_table.update(overrides(args, TARGET_FLAGS))
    if args.arch:
        target_table["arch"] = args.arch
    if args.label_map:
        table = read_table_file(args.label_map)
        target_table["label_map"] = table.get("label_map", table.get("label_groups", table))
    config = TargetConfig.from_dict(target_table)
    pre_table = preprocess_table(args, section(file_config, "preprocess", args.config))
    pre_table.setdefault("divisible_by", config.multiple)
    pre_config = PreprocessConfig.from_dict(pre_table)
    check_output_folder(args.out, ("target.safetensors", "target.json"))
    subjects = cohort_subjects(args)
    missing = [s.id for s in subjects if s.labels is None]
    if missing:
        raise CohortError(
            f"{args.cohort}: training a target needs labels; none for {', '.join(missing)}"
        )
    check_subjects(subjects, pre_config.skull_strip, args.cohort, require_labels=True)
    _check_trainable(config, pre_config, subjects)
    pending: list = []
    pre_config = fixed_shape(subjects, config_with_nyul(pre_config, subjects), pending)
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
