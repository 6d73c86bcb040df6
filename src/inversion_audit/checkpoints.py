"""Checkpoints: weights in safetensors plus a JSON sidecar; untrusted files never run code.

The format (hash, file name, dtypes, atomic writes) is the project's one weights format,
:mod:`inversion_audit.io.weights_format`; this module adds the checkpoint's own fields
(checked by :mod:`inversion_audit.checkpoint_sidecar`).
``save_checkpoint("dir/target", model, metadata)`` writes ``dir/target.safetensors`` and
``dir/target.json``. The sidecar records the architecture and its arguments, the kind
(``target`` or ``inversion``), the threat model, the preprocessing config, label map,
seed, epochs, final losses, package versions and a hash of the training subject ids
(never the ids); a decoder's also how its training converged (``convergence``: why it
stopped, loss curves, learning rates, its validation loss and scores on the attacker's
validation subjects). Loading rebuilds the network from the sidecar and checks every tensor's
name and shape; a mismatch raises :class:`~inversion_audit.errors.CheckpointError`
naming the file. ``.pt``/``.pth`` weights are read only with
``torch.load(..., weights_only=True)``, so a pickle that would run code is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint_sidecar import SIDECAR_FORMAT, check_sidecar
from .data.sidecar import preprocess_config
from .errors import CheckpointError
from .io import ids_hash, state_hash
from .io.weights import load_weights, state_mismatch
from .io.weights_format import (
    FORBIDDEN_KEYS,
    WEIGHT_SUFFIXES,
    read_record,
    read_weights,
    weights_paths,
    write_weights,
)
from .models import ARCHITECTURES

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .data import PreprocessConfig

__all__ = [
    "SIDECAR_FORMAT",
    "checkpoint_paths",
    "save_checkpoint",
    "load_target",
    "load_inversion",
    "load_weights",
    "read_metadata",
    "training_metadata",
    "preprocess_config",
    "state_hash",
]


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, sidecar)`` for a weights file, a ``.json`` sidecar or a bare stem.

    For a sidecar or a stem, the weights are the first existing of ``.safetensors``,
    ``.pt``, ``.pth`` (``.safetensors`` if none exists).
    """
    return weights_paths(path, WEIGHT_SUFFIXES)


def training_metadata(
    config: Any,
    history: Any,
    preprocess: PreprocessConfig | None = None,
    train_ids: list[str] | tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Standard sidecar metadata after training: config, seed, epochs, losses, preprocessing, ids hash.

    ``config`` is a ``TargetConfig`` or ``InversionConfig``, ``history`` a ``TrainingHistory``;
    a history with a ``convergence()`` table (an inversion decoder's) adds it as
    ``convergence``. Only a hash of ``train_ids`` is kept.
    """
    out: dict[str, Any] = {
        "config": history.config if history is not None else config.to_dict(),
        "seed": config.seed,
        "epochs": config.epochs,
        "epochs_run": len(history.epoch_loss) if history is not None else None,
        "final_losses": {
            "train": history.final_loss if history is not None else None,
            "val": history.val_loss[history.best_epoch]
            if history is not None and history.val_loss
            else None,
            **(history.loss_terms if history is not None else {}),
        },
        "history": {
            "epoch_loss": history.epoch_loss,
            "val_loss": history.val_loss,
            "seconds": history.seconds,
        }
        if history is not None
        else None,
        "preprocess": preprocess.to_dict() if preprocess is not None else None,
    }
    if getattr(config, "label_map", None) is not None:
        out["label_map"] = {str(k): v for k, v in sorted(config.label_map.items())}
    if getattr(config, "threat_model", None) is not None:
        out["threat_model"] = config.threat_model
    if history is not None and hasattr(history, "convergence"):
        out["convergence"] = history.convergence()
    if train_ids is not None:
        out["train_ids_hash"] = ids_hash(list(train_ids))
        out["n_train"] = len(train_ids)
    return out


def save_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, metadata: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``<name>.safetensors`` and its ``<name>.json`` sidecar atomically.

    ``path`` is a stem (``dir/target``) or a file name (``dir/target.safetensors``).
    ``model`` is a target network (``model.arch`` ``unet``/``segnet``) or an inversion decoder.
    ``metadata`` is JSON-safe (see :func:`training_metadata`); values with a ``to_dict()``
    are converted; keys naming subject ids are refused. Returns ``(weights, sidecar)``.
    """
    metadata = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in (metadata or {}).items()}
    bad = [k for k in metadata if k in FORBIDDEN_KEYS]
    if bad:
        raise ValueError(
            f"checkpoint metadata must not hold subject ids (keys {bad}); store ids_hash(ids) instead"
        )
    arch = getattr(model, "arch", None)
    if arch not in (*ARCHITECTURES, "inversion"):
        raise ValueError(
            f"cannot checkpoint {type(model).__name__}: not a target network or inversion decoder"
        )
    record = {
        **metadata,
        "format": SIDECAR_FORMAT,
        "kind": "inversion" if arch == "inversion" else "target",
        "architecture": arch,
        "arch_args": model.arch_args,
    }
    if arch == "inversion":
        record["threat_model"] = model.arch_args["threat_model"]
        if getattr(model, "target_weights_sha256", None):
            record.setdefault("target_weights_sha256", model.target_weights_sha256)
    elif getattr(model, "label_map", None) is not None:
        record.setdefault("label_map", {str(k): int(v) for k, v in sorted(model.label_map.items())})
    return write_weights(path, model.state_dict(), record)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked sidecar of a checkpoint (given as weights file, sidecar or stem)."""
    record, _, sidecar = read_record(path, SIDECAR_FORMAT, "checkpoint", WEIGHT_SUFFIXES)
    return check_sidecar(record, sidecar)


def _fill(model: nn.Module, state: dict[str, torch.Tensor], weights: Path) -> None:
    """Load ``state`` into ``model``; every tensor must fit it (dtypes: see ``read_weights``)."""
    expected = model.state_dict()
    parts = state_mismatch(expected, state)
    if parts:
        raise CheckpointError(
            f"{weights}: weights do not match architecture {model.arch} {model.arch_args}: "
            + "; ".join(parts)
        )
    model.load_state_dict({k: state[k].to(expected[k].dtype) for k in expected}, strict=True)


def _read(
    path: str | os.PathLike[str], kind: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """Sidecar, tensors and weights path of a ``kind`` checkpoint, read through ``read_weights``."""
    weights, _ = checkpoint_paths(path)

    def check(meta: dict[str, Any], sidecar: Path) -> None:
        check_sidecar(meta, sidecar)
        if meta["kind"] != kind:
            raise CheckpointError(
                f"{weights}: is a {meta['kind']} checkpoint, not a {kind} checkpoint"
            )

    meta, state = read_weights(
        path,
        SIDECAR_FORMAT,
        "checkpoint",
        check=check,
        suffixes=WEIGHT_SUFFIXES,
        hash_required=False,
    )
    return meta, state, weights


def load_target(path: str | os.PathLike[str], device: str = "cpu") -> nn.Module:
    """Load a target network in eval mode; ``model.metadata`` holds the sidecar, ``model.label_map`` the label map."""
    from .devices import get_device
    from .models import build_target_network
    from .training.config import parse_label_map

    meta, state, weights = _read(path, "target")
    try:
        model = build_target_network(meta["architecture"], **meta["arch_args"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{weights}: invalid architecture in sidecar: {exc}") from exc
    _fill(model, state, weights)
    model.metadata = meta
    model.label_map = parse_label_map(meta.get("label_map"))
    return model.eval().to(get_device(device))


def _same_preprocessing(decoder_meta: dict, target_meta: dict, weights: Path) -> None:
    """Refuse a decoder whose recorded preprocessing differs from its target's."""
    mine, theirs = preprocess_config(decoder_meta), preprocess_config(target_meta)
    if mine is not None and theirs is not None and mine != theirs:
        a, b = mine.to_dict(), theirs.to_dict()
        keys = ", ".join(k for k in sorted(a) if a[k] != b[k])
        raise CheckpointError(
            f"{weights}: the decoder's preprocessing differs from its target's in {keys}: "
            "it was not trained against this target"
        )


def load_inversion(
    path: str | os.PathLike[str], target: nn.Module | None = None, device: str = "cpu"
) -> nn.Module:
    """Load an inversion decoder in eval mode; ``decoder.metadata`` holds the sidecar.

    With ``target``, the decoder must have been built for its architecture and, when the
    sidecars record them, trained against exactly these target weights with the same
    preprocessing.
    """
    from .attack.decoder import InversionDecoder
    from .devices import get_device

    meta, state, weights = _read(path, "inversion")
    args = meta["arch_args"]
    try:
        decoder = InversionDecoder(args["target_arch"], args["target_args"], args["threat_model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{weights}: invalid inversion decoder in sidecar: {exc}") from exc
    if target is not None:
        if (target.arch, dict(target.arch_args)) != (
            args["target_arch"],
            dict(args["target_args"]),
        ):
            raise CheckpointError(
                f"{weights}: decoder was built for target {args['target_arch']} {args['target_args']}, "
                f"not for {target.arch} {target.arch_args}"
            )
        recorded = meta.get("target_weights_sha256")
        if recorded and recorded != state_hash(target):
            raise CheckpointError(
                f"{weights}: decoder was trained against different target weights"
            )
        _same_preprocessing(meta, getattr(target, "metadata", None) or {}, weights)
    _fill(decoder, state, weights)
    decoder.metadata = meta
    decoder.target_weights_sha256 = meta.get("target_weights_sha256")
    return decoder.eval().to(get_device(device))
