"""Checkpoints: weights in safetensors plus a JSON sidecar; untrusted files never run code.

``save_checkpoint("dir/target", model, metadata)`` writes ``dir/target.safetensors`` and
``dir/target.json``. The sidecar records the architecture and its arguments, the kind
(``target`` or ``inversion``), the threat model, the preprocessing config, label map,
seed, epochs, final losses, package versions and a hash of the training subject ids
(never the ids). Loading rebuilds the network from the sidecar and checks every tensor's
name and shape; a mismatch raises :class:`~inversion_audit.errors.CheckpointError`
naming the file. ``.pt``/``.pth`` weights are read only with
``torch.load(..., weights_only=True)``, so a pickle that would run code is refused.
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint_sidecar import SIDECAR_FORMAT, check_sidecar
from .data.sidecar import preprocess_config
from .errors import CheckpointError
from .io import atomic_write_bytes, atomic_write_json, file_hash, ids_hash, state_hash
from .io.untrusted import read_json
from .io.weights import load_weights, state_mismatch
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
    "is_external_decoder",
    "load_inversion",
    "load_with_decoder",
    "load_weights",
    "read_metadata",
    "training_metadata",
    "preprocess_config",
    "state_hash",
]

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
#: metadata keys refused by :func:`save_checkpoint`: subject ids never go into a checkpoint
FORBIDDEN_KEYS = ("ids", "subjects", "train_ids", "private_set", "attack_set")


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, sidecar)`` for a weights file, a ``.json`` sidecar or a bare stem.

    For a sidecar or a stem, the weights are the first existing of ``.safetensors``,
    ``.pt``, ``.pth`` (``.safetensors`` if none exists).
    """
    p = Path(path)
    if p.suffix in WEIGHT_SUFFIXES:
        return p, p.with_suffix(".json")
    stem = p.with_suffix("") if p.suffix == ".json" else p
    sidecar = Path(f"{stem}.json")
    for suffix in WEIGHT_SUFFIXES:
        if Path(f"{stem}{suffix}").exists():
            return Path(f"{stem}{suffix}"), sidecar
    return Path(f"{stem}.safetensors"), sidecar


def _versions() -> dict[str, str]:
    from . import __version__

    out = {"inversion_audit": __version__, "python": platform.python_version()}
    for dist in ("torch", "monai", "safetensors", "numpy"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover
            out[dist] = "absent"
    return out


def training_metadata(
    config: Any,
    history: Any,
    preprocess: PreprocessConfig | None = None,
    train_ids: list[str] | tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Standard sidecar metadata after training: config, seed, epochs, losses, preprocessing, ids hash.

    ``config`` is a ``TargetConfig`` or ``InversionConfig``, ``history`` a ``TrainingHistory``.
    Only a hash of ``train_ids`` is kept.
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
    from safetensors.torch import save

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
    weights, sidecar = checkpoint_paths(path)
    weights = weights.with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(state)
    record = {
        **metadata,
        "format": SIDECAR_FORMAT,
        "kind": "inversion" if arch == "inversion" else "target",
        "architecture": arch,
        "arch_args": model.arch_args,
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(data).hexdigest()[:16],
        "tensors": {k: list(v.shape) for k, v in state.items()},
        "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()},
        "versions": _versions(),
    }
    if arch == "inversion":
        record["threat_model"] = model.arch_args["threat_model"]
        if getattr(model, "target_weights_sha256", None):
            record.setdefault("target_weights_sha256", model.target_weights_sha256)
    elif getattr(model, "label_map", None) is not None:
        record.setdefault("label_map", {str(k): int(v) for k, v in sorted(model.label_map.items())})
    atomic_write_bytes(weights, data)
    atomic_write_json(sidecar, record)
    return weights, sidecar


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of a checkpoint (given as weights file, sidecar or stem)."""
    weights, sidecar = checkpoint_paths(path)
    if not sidecar.exists():
        raise CheckpointError(
            f"{weights}: sidecar {sidecar.name} is missing; it records the architecture needed to load the weights"
        )
    # untrusted: size and nesting bounded before parsing, every field checked before use
    meta = read_json(sidecar, CheckpointError, "checkpoint sidecar")
    return check_sidecar(meta, sidecar)


def _fill(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    weights: Path,
    dtypes: dict[str, str] | None = None,
) -> None:
    """Load ``state`` into ``model``; every tensor must fit it and have its sidecar's dtype."""
    for name, want in (dtypes or {}).items():
        got = str(state[name].dtype).removeprefix("torch.") if name in state else want
        if got != want:
            raise CheckpointError(f"{weights}: tensor {name} is {got}, its sidecar records {want}")
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
    weights, sidecar = checkpoint_paths(path)
    meta = read_metadata(path)
    if meta["kind"] != kind:
        raise CheckpointError(f"{weights}: is a {meta['kind']} checkpoint, not a {kind} checkpoint")
    if meta.get("weights_sha256") and weights.suffix == ".safetensors" and weights.exists():
        if file_hash(weights) != meta["weights_sha256"]:
            raise CheckpointError(
                f"{weights}: weights do not match their sidecar {sidecar.name} (hash differs)"
            )
    return meta, load_weights(weights), weights


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
    _fill(model, state, weights, meta.get("dtypes"))
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
    _fill(decoder, state, weights, meta.get("dtypes"))
    decoder.metadata = meta
    decoder.target_weights_sha256 = meta.get("target_weights_sha256")
    return decoder.eval().to(get_device(device))


def is_external_decoder(inversion: str | os.PathLike[str]) -> bool:
    """Whether an inversion checkpoint's sidecar says it was trained against an external model."""
    try:  # untrusted: size and nesting bounded before parsing
        meta = read_json(checkpoint_paths(inversion)[1], CheckpointError, "checkpoint sidecar")
        return meta["arch_args"]["target_arch"] == "external"
    except (CheckpointError, KeyError, TypeError):
        return False


def load_with_decoder(
    path: str | os.PathLike[str], inversion: str | os.PathLike[str], device: str = "cpu"
) -> tuple[Any, Any, Any]:
    """``(target, decoder, preprocess config)``: an external model and the decoder trained against it.

    Raises :class:`CheckpointError` naming the file when they do not belong together or
    the decoder's sidecar records no preprocessing.
    """
    from .devices import get_device
    from .models.external.rebuild import rebuild_target

    dev = str(get_device(device))
    meta = read_metadata(inversion)
    args = meta["arch_args"].get("target_args") if meta["kind"] == "inversion" else None
    if meta["arch_args"].get("target_arch") != "external" or not isinstance(args, dict):
        raise CheckpointError(f"{inversion}: not a decoder trained against an external model")
    target = rebuild_target(path, args).to(dev)
    decoder = load_inversion(inversion, target=target, device=dev)
    config = preprocess_config(decoder.metadata)
    if config is None:
        raise CheckpointError(
            f"{inversion}: sidecar has no 'preprocess' config to prepare inputs with"
        )
    return target, decoder, config
