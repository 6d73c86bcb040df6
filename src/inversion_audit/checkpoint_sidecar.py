"""Checking a checkpoint sidecar: untrusted JSON, every field typed and bounded before use.

A sidecar says which network to build (architecture, depth, filters, ...), how to
preprocess, which labels map to which classes. It may come from someone else, so each
field the package reads is checked here, before anything is built or allocated;
fields it does not read are kept as they are (the file's size and nesting were bounded
when it was read). The fields every weights sidecar shares (hash, file name, dtypes) are
checked again by :func:`~inversion_audit.io.weights_format.read_weights`. Errors are
:class:`~inversion_audit.errors.CheckpointError` naming the file and the key. Torch-free.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError
from .io.weights_format import TENSOR_DTYPES

__all__ = ["SIDECAR_FORMAT", "TENSOR_DTYPES", "check_sidecar", "check_target_args"]

#: the ``format`` every checkpoint sidecar of this package records
SIDECAR_FORMAT = "inversion-audit-checkpoint/1"

_HEX = re.compile(r"[0-9a-f]{1,64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
MAX_TENSORS = 10_000


def check_target_args(arch: Any, args: Any, where: str) -> None:
    """Check a target network's ``arch_args`` (as the models record them); :class:`ConfigError` naming ``where``."""
    from .models import ARCHITECTURES
    from .training.config import MAX_CLASSES, check_int, check_layout_args, short_repr

    if arch == "external":  # a decoder sized from an external model's latent
        from .models.external.args import check_external_args

        check_external_args(args, where)
        return
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ConfigError(
            f"architecture must be one of {', '.join(ARCHITECTURES)}, got {short_repr(arch)}"
        )
    if not isinstance(args, dict):
        raise ConfigError(f"{where} must be a table, got {type(args).__name__}")
    # every family in ARCHITECTURES takes the paper's layout (depth, filters, kernel, pool)
    known = {
        "in_channels",
        "n_classes",
        "depth",
        "base_filters",
        "kernel_size",
        "pool_size",
        "norm",
    }
    unknown = sorted(str(k) for k in set(args) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(short_repr(k) for k in unknown[:5])}"
        )
    missing = sorted(known - {"in_channels", "norm"} - set(args))
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}")
    check_layout_args(
        args["depth"], args["base_filters"], args["kernel_size"], args["pool_size"], where
    )
    check_int(f"{where}.n_classes", args["n_classes"], 2, MAX_CLASSES)
    check_int(f"{where}.in_channels", args.get("in_channels", 1), 1, 16)
    norm = args.get("norm", "batch")
    if not isinstance(norm, str) or norm not in ("batch", "instance", "group", "none"):
        raise ConfigError(f"{where}.norm must be batch|instance|group|none, got {short_repr(norm)}")


def _arch(meta: dict[str, Any]) -> None:
    from .models import THREAT_MODELS
    from .training.config import short_repr

    kind, arch, args = meta["kind"], meta["architecture"], meta["arch_args"]
    if kind not in ("target", "inversion"):
        raise ConfigError(f"kind must be 'target' or 'inversion', got {short_repr(kind)}")
    if kind == "target":
        check_target_args(arch, args, "arch_args")
        return
    if arch != "inversion":
        raise ConfigError(
            f"architecture of an inversion checkpoint must be 'inversion', got {short_repr(arch)}"
        )
    if not isinstance(args, dict):
        raise ConfigError(f"arch_args must be a table, got {type(args).__name__}")
    for key in ("target_arch", "target_args", "threat_model"):
        if key not in args:
            raise ConfigError(f"arch_args lacks {key!r}")
    check_target_args(args["target_arch"], args["target_args"], "arch_args.target_args")
    if not isinstance(args["threat_model"], str) or args["threat_model"] not in THREAT_MODELS:
        raise ConfigError(
            f"arch_args.threat_model must be one of {', '.join(THREAT_MODELS)}, "
            f"got {short_repr(args['threat_model'])}"
        )


def _fields(meta: dict[str, Any]) -> None:
    from .models import THREAT_MODELS
    from .training.config import MAX_EPOCHS, MAX_SEED, check_int, parse_label_map, short_repr

    for key in ("weights_sha256", "target_weights_sha256", "train_ids_hash"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, str) and _HEX.fullmatch(value)):
            raise ConfigError(f"{key} must be a hexadecimal hash, got {short_repr(value)}")
    name = meta.get("weights_file")
    if name is not None and not (isinstance(name, str) and _FILE_NAME.fullmatch(name)):
        raise ConfigError(f"weights_file must be a plain file name, got {short_repr(name)}")
    if meta.get("seed") is not None:
        check_int("seed", meta["seed"], 0, MAX_SEED)
    for key in ("epochs", "epochs_run", "n_train", "fold"):
        if meta.get(key) is not None:
            check_int(key, meta[key], 0, MAX_EPOCHS if key.startswith("epochs") else 10**7)
    threat = meta.get("threat_model")
    if threat is not None and (not isinstance(threat, str) or threat not in THREAT_MODELS):
        raise ConfigError(
            f"threat_model must be one of {', '.join(THREAT_MODELS)}, got {short_repr(threat)}"
        )
    for key in ("config", "final_losses", "history", "versions", "tensors", "dtypes"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise ConfigError(f"{key} must be a table, got {type(meta[key]).__name__}")
    tensors = meta.get("tensors") or {}
    if len(tensors) > MAX_TENSORS:
        raise ConfigError(f"tensors lists more than {MAX_TENSORS} tensors")
    for tname, shape in tensors.items():
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in shape
            )
        ):
            raise ConfigError(f"tensors.{short_repr(tname)} must be a list of sizes")
    dtypes = meta.get("dtypes") or {}
    if len(dtypes) > MAX_TENSORS:
        raise ConfigError(f"dtypes lists more than {MAX_TENSORS} tensors")
    for tname, dtype in dtypes.items():
        if dtype not in TENSOR_DTYPES:
            raise ConfigError(
                f"dtypes.{short_repr(tname)} must be one of {', '.join(TENSOR_DTYPES)}"
            )
    if "label_map" in meta:
        try:
            parse_label_map(meta["label_map"])
        except ConfigError as exc:
            raise ConfigError(f"label_map: {exc}") from None
    if meta.get("preprocess") is not None:
        from .data.preprocess import PreprocessConfig

        PreprocessConfig.from_dict(meta["preprocess"])
    if meta.get("convergence") is not None:
        _convergence(meta["convergence"])


#: the longest per-epoch curve a sidecar may hold, and the most validation scores it names
MAX_CURVE = 100_000
MAX_SCORES = 32
_SCORE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _optional_number(key: str, value: Any, low: float, high: float) -> None:
    from .training.config import check_number

    if value is None:
        return
    check_number(key, value)
    if not low <= value <= high:
        raise ConfigError(f"{key} must be in [{low}, {high}], got {value}")


def _curve(key: str, value: Any) -> None:
    if not isinstance(value, list) or len(value) > MAX_CURVE:
        raise ConfigError(f"{key} must be a list of at most {MAX_CURVE} numbers")
    for k, v in enumerate(value):
        _optional_number(f"{key}[{k}]", v, -1e30, 1e30)


def _convergence(table: Any) -> None:
    """An inversion decoder's ``convergence`` table (optional: decoders saved before it
    existed have none); every field it records is optional too."""
    from .attack.convergence import DECODER_STOPS, LR_SCHEDULES
    from .training.config import MAX_EPOCHS, check_int, short_repr

    if not isinstance(table, dict):
        raise ConfigError(f"convergence must be a table, got {type(table).__name__}")
    stopped = table.get("stopped_by")
    if stopped is not None and stopped not in DECODER_STOPS:
        raise ConfigError(
            f"convergence.stopped_by must be one of {', '.join(DECODER_STOPS)}, "
            f"got {short_repr(stopped)}"
        )
    schedule = table.get("lr_schedule")
    if schedule is not None and schedule not in LR_SCHEDULES:
        raise ConfigError(
            f"convergence.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
            f"got {short_repr(schedule)}"
        )
    counts = {"epochs_run": MAX_EPOCHS, "budget_epochs": MAX_EPOCHS, "best_epoch": MAX_EPOCHS}
    counts |= {"steps_run": 2**53, "n_train": 10**7, "n_val": 10**7, "patience": MAX_EPOCHS}
    for key, high in counts.items():
        if table.get(key) is not None:
            check_int(f"convergence.{key}", table[key], 0, high)
    for key in ("train_loss", "val_loss", "lr"):
        if table.get(key) is not None:
            _curve(f"convergence.{key}", table[key])
    for key in ("final_val_loss", "best_val_loss"):
        _optional_number(f"convergence.{key}", table.get(key), -1e30, 1e30)
    _optional_number("convergence.min_delta", table.get("min_delta"), 0.0, 1e30)
    fraction = table.get("validation_fraction")
    _optional_number("convergence.validation_fraction", fraction, 0.0, 1.0)
    if fraction == 1.0:
        raise ConfigError("convergence.validation_fraction must be below 1")
    scores = table.get("val_metrics")
    if scores is None:
        return
    if not isinstance(scores, dict) or len(scores) > MAX_SCORES:
        raise ConfigError(f"convergence.val_metrics must be a table of at most {MAX_SCORES} scores")
    for name, value in scores.items():
        if not (isinstance(name, str) and _SCORE_NAME.fullmatch(name)):
            raise ConfigError(f"convergence.val_metrics: bad score name {short_repr(name)}")
        bounded = name in ("ssim", "correlation")
        low, high = (-1.0, 1.0) if bounded else (-1e30, 1e30)
        _optional_number(f"convergence.val_metrics.{name}", value, low, high)


def check_sidecar(meta: Any, sidecar: str | Path) -> dict[str, Any]:
    """Return ``meta`` if every field the package reads is well typed and in range.

    Raises :class:`CheckpointError` ``<sidecar>: <key> ...`` otherwise.
    """
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(
            f"{sidecar}: not an inversion-audit checkpoint sidecar (format {SIDECAR_FORMAT})"
        )
    for key in ("kind", "architecture", "arch_args"):
        if key not in meta:
            raise CheckpointError(f"{sidecar}: sidecar lacks {key!r}")
    try:
        _arch(meta)
        _fields(meta)
    except ConfigError as exc:
        raise CheckpointError(f"{sidecar}: {exc}") from None
    return meta
