"""``train-inversion`` and ``reconstruct``: the attack's decoder, trained and then applied.

``train-inversion`` trains the inversion decoder against a frozen target on the attack set
and writes ``OUT/inversion.safetensors`` + ``inversion.json``; with ``--validation-fraction``
it holds out attack subjects and trains to convergence (``--patience``, ``--min-delta``,
``--lr-schedule``), then prints why it stopped and the decoder's SSIM on those subjects; ``reconstruct`` writes
``OUT/<id>_recon.nii.gz`` (the subject's original grid) and ``OUT/<id>_recon_pre.nii.gz``
(the preprocessed grid). ``--target`` takes every source a study's ``[model]`` does: a
target checkpoint, MONAI weights (``--network``, ``--network-args``), a MONAI bundle folder
or an nnU-Net trained model folder (``--fold``), loaded by :mod:`inversion_audit.attack_pair`.
A checkpoint records its preprocessing; an external model is fed as ``--config``'s
``[preprocess]`` table and the preprocessing flags say (a MONAI network's grid is
``--shape``, default: one that holds every subject; a bundle's its metadata's; an nnU-Net
folder's its plans'). The decoder's sidecar records the model, so ``reconstruct`` rebuilds
it from ``--target`` alone and refuses a model other than the one it was trained against.

Validate, then write: each command reads and checks its config, the model, subject ids and
every subject's files (headers and voxels) before it writes to ``--out`` or to the
preprocessing cache; a refusal leaves both as they were.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..attack.convergence import (
    CONVERGENCE_DEFAULTS,
    LR_SCHEDULES,
    check_convergence_args,
    split_attack_set,
)
from ..data import PreprocessConfig, config_with_nyul, save_pending
from ..errors import ConfigError
from ..io.paths import check_output_folder, output_path
from ..models.latent import THREAT_MODELS
from .common import (
    PREPROCESS_FLAGS,
    add_preprocess_args,
    add_target_args,
    check_subjects,
    cohort_subjects,
    fail,
    preprocess_table,
    read_table_file,
    setup_logging,
    target_spec,
)
from .train_cmd import add_cohort_args, add_training_args, fixed_shape, overrides, section

if TYPE_CHECKING:
    import numpy as np

    from ..attack import InversionConfig
    from ..attack.history import InversionHistory

__all__ = ["register"]

#: the two files ``reconstruct`` writes per subject, and its record of what is complete
RECON_SUFFIXES = ("_recon.nii.gz", "_recon_pre.nii.gz")
RECORD = "reconstruct.json"

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

#: convergence settings: flag name -> ``train_inversion`` keyword (and ``[inversion]`` key)
CONVERGENCE_FLAGS = {
    "validation_fraction": "validation_fraction",
    "patience": "patience",
    "min_delta": "min_delta",
    "lr_schedule": "lr_schedule",
}


def register(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser(
        "train-inversion", help="train an inversion decoder against a target on the attack set"
    )
    add_target_args(i)
    add_cohort_args(i)
    add_training_args(i)
    i.add_argument("--threat-model", choices=list(THREAT_MODELS))
    i.add_argument("--ssim-weight", type=float)
    i.add_argument("--gradient-weight", type=float)
    i.add_argument("--flip-augment", action="store_true", default=None)
    conv = i.add_argument_group("training to convergence (the epochs become a budget)")
    conv.add_argument(
        "--validation-fraction",
        type=float,
        help="share of the attack subjects held out for validation (default 0: none)",
    )
    conv.add_argument(
        "--patience",
        type=int,
        help="stop after this many epochs without a validation improvement (default 0: never)",
    )
    conv.add_argument(
        "--min-delta", type=float, help="smallest validation improvement that counts (default 0)"
    )
    conv.add_argument(
        "--lr-schedule", choices=list(LR_SCHEDULES), help="learning-rate schedule (default none)"
    )
    add_preprocess_args(
        i.add_argument_group("preprocessing of an external model (a checkpoint records its own)")
    )
    i.set_defaults(handler=_train_inversion)

    r = sub.add_parser(
        "reconstruct", help="reconstruct subjects from their latent codes (writes NIfTI)"
    )
    add_target_args(r, with_latent=False)
    r.add_argument("--inversion", required=True, help="inversion decoder checkpoint")
    add_cohort_args(r)
    r.set_defaults(handler=_reconstruct)


def _external_preprocess(args: argparse.Namespace, file_config: dict) -> PreprocessConfig:
    table = preprocess_table(args, section(file_config, "preprocess", args.config))
    return PreprocessConfig.from_dict(table)


def _common_grid(subjects: list, config: PreprocessConfig, pending: list) -> PreprocessConfig:
    """``config`` on the grid that holds every subject (a MONAI network's input without
    ``--shape``); the grid does not depend on the intensities, so Nyul landmarks wait."""
    if config.intensity != "nyul":
        return fixed_shape(subjects, config, pending)
    probe = dataclasses.replace(config, intensity="none")
    return dataclasses.replace(config, shape=fixed_shape(subjects, probe, []).shape)


def _train_inversion(args: argparse.Namespace) -> int:
    from ..attack import train_inversion
    from ..attack_pair import load_target_any
    from ..checkpoints import save_checkpoint, state_hash, training_metadata
    from ..data import preprocess_cohort
    from ..devices import set_threads
    from ..progress import tqdm_progress

    setup_logging(args.quiet)
    set_threads(args.threads)
    file_config = read_table_file(args.config) if args.config else {}
    table = section(file_config, "inversion", args.config)
    table.update(overrides(args, INVERSION_FLAGS))
    table.update(overrides(args, CONVERGENCE_FLAGS))
    config, convergence = _split_convergence(table)
    spec = target_spec(args)
    source = spec.source
    spec.check_options(source)
    pending: list = []
    if source == "checkpoint":
        given = [
            f"--{f.replace('_', '-')}" for f in PREPROCESS_FLAGS if getattr(args, f) is not None
        ]
        if given:
            raise ConfigError(
                f"{spec.path}: the checkpoint's sidecar records its preprocessing; "
                f"{', '.join(given)} apply to external models only"
            )
        loaded = load_target_any(spec, device=args.device)
        check_output_folder(args.out, ("inversion.safetensors", "inversion.json"))
        subjects = cohort_subjects(args)
        check_subjects(subjects, loaded.preprocess.skull_strip, args.cohort)
        pre_config = loaded.preprocess
    else:
        pre_config = _external_preprocess(args, file_config)
        check_output_folder(args.out, ("inversion.safetensors", "inversion.json"))
        subjects = cohort_subjects(args)
        check_subjects(subjects, pre_config.skull_strip, args.cohort)
        if source == "monai" and pre_config.shape is None:
            pre_config = _common_grid(subjects, pre_config, pending)
        loaded = load_target_any(spec, pre_config, device=args.device)
        pre_config = config_with_nyul(loaded.preprocess, subjects)  # every check has passed
    target = loaded.target
    try:  # the validation split needs subjects enough: refused before anything is written
        split_attack_set(
            len(subjects), convergence["validation_fraction"], config.seed, [s.id for s in subjects]
        )
    except ValueError as exc:
        raise ConfigError(f"{args.cohort}: {exc}") from None
    save_pending(pending)
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
                validation_metrics=_attacker_scores,
                **convergence,
            )
        except ValueError as exc:
            return fail(str(exc), 1)
    meta = training_metadata(config, history, pre_config, [s.id for s in subjects])
    meta["target_weights_sha256"] = state_hash(target)
    if loaded.record is not None:
        meta["external_model"] = loaded.record
    weights, _ = save_checkpoint(Path(args.out) / "inversion", decoder, meta)
    print(
        f"inversion decoder ({config.threat_model}) against {loaded.source} target: "
        f"final loss {history.final_loss:.5f}, {history.seconds:.0f} s"
    )
    print(_convergence_line(history))
    print(f"wrote {weights}")
    return 0


def _split_convergence(table: dict[str, Any]) -> tuple[InversionConfig, dict[str, Any]]:
    """``(InversionConfig, train_inversion keywords)`` of an ``[inversion]`` table with flags.

    The four convergence settings are taken from the config when it has them as fields,
    else from the table; either way they are checked here, before anything is written.
    """
    from ..attack import InversionConfig

    fields = {f.name for f in dataclasses.fields(InversionConfig)}
    loose = {k: table.pop(k) for k in CONVERGENCE_DEFAULTS if k not in fields and k in table}
    config = InversionConfig.from_dict(table)
    kwargs = {
        k: getattr(config, k) if k in fields else loose.get(k, default)
        for k, default in CONVERGENCE_DEFAULTS.items()
    }
    try:
        check_convergence_args(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"inversion: {exc}") from None
    return config, kwargs


def _attacker_scores(reconstruction: np.ndarray, original: np.ndarray) -> dict[str, float]:
    """Whole-volume SSIM and correlation, as the study scores a reconstruction."""
    from ..metrics import correlation, ssim

    return {
        "ssim": ssim(reconstruction, original, data_range=1.0),
        "correlation": correlation(reconstruction, original),
    }


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _convergence_line(history: InversionHistory) -> str:
    """Why training stopped, and the attacker-side validation scores when there are any."""
    line = (
        f"stopped by {history.stopped_by} after {history.epochs_run}/{history.budget_epochs} "
        f"epochs ({history.steps} steps)"
    )
    if not history.n_val:
        return f"{line}; no validation split (--validation-fraction 0): convergence not measured"
    best = "" if history.best_epoch is None else f" (epoch {history.best_epoch + 1})"
    line = (
        f"{line}; best validation loss {_number(history.best_val_loss, 5)}{best}; "
        f"on {history.n_val} held-out attack subject(s): "
        f"SSIM {_number(history.val_ssim, 3)}, correlation {_number(history.val_correlation, 3)}"
    )
    if history.stopped_by == "budget":
        line += "; the budget stopped it, so a larger budget may reconstruct more"
    return line


def _reconstruct(args: argparse.Namespace) -> int:
    from ..attack import reconstruct_subject
    from ..attack_pair import load_attack_pair
    from ..devices import set_threads
    from ..io import atomic_write_json
    from ..progress import report, tqdm_progress

    setup_logging(args.quiet)
    set_threads(args.threads)
    # the decoder's sidecar says what the target is; the pair is checked before anything else
    pair = load_attack_pair(target_spec(args), args.inversion, device=args.device)
    pre_config = pair.preprocess
    subjects = cohort_subjects(args)
    out = Path(args.out)
    # everything is checked before the first write: the folder, every output name, every file
    names = [f"{s.id}{suffix}" for s in subjects for suffix in RECON_SUFFIXES]
    check_output_folder(out, (*names, RECORD))
    check_subjects(subjects, pre_config.skull_strip, args.cohort)
    done: list[str] = []
    with tqdm_progress(args.quiet) as progress:
        try:
            for k, subject in enumerate(subjects):
                reconstruct_subject(
                    pair.target, pair.decoder, subject, pre_config, pair.device, out_dir=out
                )
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
