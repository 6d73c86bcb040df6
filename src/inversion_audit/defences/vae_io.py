"""The obfuscation VAE's weights on disk: safetensors plus a JSON sidecar, loaded as untrusted.

The sidecar records the format, the VAE's layout (``vae_filters``, ``vae_latent``), the
settings it was trained with, the weights' SHA-256 and every tensor's shape and dtype. The
mapping's ``levels`` and ``bins`` are left out: one VAE serves every strength. Loading
checks the format, the layout against the config, the hash, and every tensor against the
rebuilt network before any weight is used.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn

    from .obfuscation import ObfuscationConfig

__all__ = ["VAE_FORMAT", "load_vae", "save_vae", "vae_paths"]

VAE_FORMAT = "inversion-audit-vae/1"
#: the VAE's layout: what its weights' shapes depend on
LAYOUT_KEYS = ("vae_filters", "vae_latent")
#: what the VAE was trained with, recorded in the sidecar
SETTING_KEYS = ("seed", "vae_filters", "vae_latent", "vae_epochs", "vae_lr", "vae_beta")


def vae_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, sidecar)``: ``<stem>.safetensors`` and ``<stem>.json`` of a stem or either file."""
    stem = Path(path)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return Path(f"{stem}.safetensors"), Path(f"{stem}.json")


def save_vae(path: str | os.PathLike[str], vae: nn.Module, config: ObfuscationConfig) -> list[Path]:
    """Write ``<stem>.safetensors`` and the ``<stem>.json`` sidecar atomically; returns both."""
    from safetensors.torch import save

    from ..io import atomic_write_bytes, atomic_write_json

    weights, sidecar = vae_paths(path)
    state = {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    data = save(state)
    record = {
        "format": VAE_FORMAT,
        "kind": "vae",
        "arch_args": {k: getattr(config, k) for k in LAYOUT_KEYS},
        "settings": {k: getattr(config, k) for k in SETTING_KEYS},
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(data).hexdigest()[:16],
        "tensors": {k: list(v.shape) for k, v in state.items()},
        "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()},
    }
    return [atomic_write_bytes(weights, data), atomic_write_json(sidecar, record)]


def _check_sidecar(meta: Any, sidecar: Path, weights: Path, config: ObfuscationConfig) -> None:
    if isinstance(meta, dict) and "format" not in meta and "vae_filters" in meta:
        raise CheckpointError(
            f"{sidecar}: a VAE saved without a weights hash (before {VAE_FORMAT}); retrain it"
        )
    if not isinstance(meta, dict) or meta.get("format") != VAE_FORMAT:
        raise CheckpointError(f"{sidecar}: not a VAE sidecar (format {VAE_FORMAT})")
    want = {k: getattr(config, k) for k in LAYOUT_KEYS}
    if meta.get("arch_args") != want:
        raise CheckpointError(
            f"{sidecar}: the VAE was built with {meta.get('arch_args')!r:.120}, the config asks for {want}"
        )
    if meta.get("weights_file") != weights.name:
        raise CheckpointError(
            f"{sidecar}: names weights {meta.get('weights_file')!r:.80}, not {weights.name}"
        )
    digest = meta.get("weights_sha256")
    if not isinstance(digest, str) or len(digest) != 16:
        raise CheckpointError(f"{sidecar}: weights_sha256 must be 16 hex characters")


def load_vae(
    path: str | os.PathLike[str], config: ObfuscationConfig, device: str = "cpu"
) -> nn.Module:
    """The VAE saved by :func:`save_vae`, in eval mode on ``device``.

    Refused with :class:`~inversion_audit.errors.CheckpointError` naming the file: a missing
    or foreign sidecar, a layout other than ``config``'s, weights whose hash differs from the
    sidecar's, or tensors that do not fit the network.
    """
    from ..devices import get_device
    from ..io import file_hash
    from ..io.untrusted import read_json
    from ..io.weights import load_weights, state_mismatch
    from .obfuscation import build_vae

    weights, sidecar = vae_paths(path)
    if not sidecar.exists():
        raise CheckpointError(f"{weights}: sidecar {sidecar.name} is missing")
    meta = read_json(sidecar, CheckpointError, "VAE sidecar")
    _check_sidecar(meta, sidecar, weights, config)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: VAE weights not found")
    if file_hash(weights) != meta["weights_sha256"]:
        raise CheckpointError(f"{weights}: weights do not match their sidecar (hash differs)")
    state = load_weights(weights)
    vae = build_vae(config)
    wrong = state_mismatch(vae.state_dict(), state)
    if wrong:
        raise CheckpointError(f"{weights}: tensors do not match the VAE: {'; '.join(wrong)}")
    vae.load_state_dict(state, strict=True)
    vae.metadata = meta  # type: ignore[attr-defined]
    return vae.eval().to(get_device(device))
