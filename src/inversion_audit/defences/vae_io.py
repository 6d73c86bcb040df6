"""The obfuscation VAE's weights on disk: the project's one weights format
(:mod:`inversion_audit.io.weights_format`: safetensors plus a hash-checked JSON sidecar).

The sidecar records the format, the VAE's layout (``vae_filters``, ``vae_latent``), the
settings it was trained with, the weights' SHA-256 and every tensor's shape and dtype. The
mapping's ``levels`` and ``bins`` are left out: one VAE serves every strength. Loading
checks the format, the layout against the config, the hash, and every tensor against the
rebuilt network before any weight is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..io.weights import state_mismatch
from ..io.weights_format import read_weights, weights_paths, write_weights

if TYPE_CHECKING:
    from torch import nn

    from ..io.weights_format import Check
    from .obfuscation import ObfuscationConfig

__all__ = ["VAE_FORMAT", "load_vae", "save_vae", "vae_paths"]

VAE_FORMAT = "inversion-audit-vae/1"
#: the VAE's layout: what its weights' shapes depend on
LAYOUT_KEYS = ("vae_filters", "vae_latent")
#: what the VAE was trained with, recorded in the sidecar
SETTING_KEYS = ("seed", "vae_filters", "vae_latent", "vae_epochs", "vae_lr", "vae_beta")


def vae_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, sidecar)``: ``<stem>.safetensors`` and ``<stem>.json`` of a stem or either file."""
    return weights_paths(path)


def save_vae(path: str | os.PathLike[str], vae: nn.Module, config: ObfuscationConfig) -> list[Path]:
    """Write ``<stem>.safetensors`` and the ``<stem>.json`` sidecar atomically; returns both."""
    record = {
        "format": VAE_FORMAT,
        "kind": "vae",
        "arch_args": {k: getattr(config, k) for k in LAYOUT_KEYS},
        "settings": {k: getattr(config, k) for k in SETTING_KEYS},
    }
    return list(write_weights(path, vae.state_dict(), record))


def _checker(weights: Path, config: ObfuscationConfig) -> Check:
    """The VAE's own field checks: its layout is ``config``'s, its weights file is ``weights``."""

    def check(meta: dict[str, Any], sidecar: Path) -> None:
        want = {k: getattr(config, k) for k in LAYOUT_KEYS}
        if meta.get("arch_args") != want:
            raise CheckpointError(
                f"{sidecar}: the VAE was built with {meta.get('arch_args')!r:.120}, "
                f"the config asks for {want}"
            )
        if meta.get("weights_file") != weights.name:
            raise CheckpointError(
                f"{sidecar}: names weights {meta.get('weights_file')!r:.80}, not {weights.name}"
            )

    return check


def load_vae(
    path: str | os.PathLike[str], config: ObfuscationConfig, device: str = "cpu"
) -> nn.Module:
    """The VAE saved by :func:`save_vae`, in eval mode on ``device``.

    Refused with :class:`~inversion_audit.errors.CheckpointError` naming the file: a missing
    or foreign sidecar, a layout other than ``config``'s, weights whose hash or dtypes differ
    from the sidecar's, or tensors that do not fit the network.
    """
    from ..devices import get_device
    from .obfuscation import build_vae

    weights, _ = vae_paths(path)
    legacy = f"a VAE saved without a weights hash (before {VAE_FORMAT}); retrain it"
    meta, state = read_weights(
        path, VAE_FORMAT, "VAE", check=_checker(weights, config), legacy=legacy
    )
    vae = build_vae(config)
    wrong = state_mismatch(vae.state_dict(), state)
    if wrong:
        raise CheckpointError(f"{weights}: tensors do not match the VAE: {'; '.join(wrong)}")
    vae.load_state_dict(state, strict=True)
    vae.metadata = meta  # type: ignore[attr-defined]
    return vae.eval().to(get_device(device))
