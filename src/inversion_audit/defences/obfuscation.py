"""The ``obfuscation`` defence of Popescu et al. (Applied Sciences 2022).

Each scan passes through a small 3D variational autoencoder (trained on the attack set)
and then through a secret, seeded, non-bijective intensity mapping: intensities are
quantised into ``bins`` bins and each bin is sent to one of ``levels`` < ``bins`` output
levels in a random order, so that neighbouring intensities land far apart and several
intensities share one output. The target trains and segments on obfuscated scans; the
identification is still measured against the true originals.

The strength is ``levels``: fewer output levels merge more intensities (stronger).
The mapping (:func:`intensity_mapping`) is numpy only; the VAE imports torch on use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from ..progress import ProgressCallback

__all__ = [
    "ObfuscationConfig",
    "Obfuscator",
    "obfuscate_inputs",
    "build_vae",
    "intensity_mapping",
    "train_vae",
    "vae_loss",
]


@dataclass(frozen=True)
class ObfuscationConfig:
    """Settings of the obfuscation.

    Attributes
    ----------
    levels : output levels of the intensity mapping (the strength; fewer is stronger).
    bins : input intensity bins over [0, 1]; must exceed ``levels`` (non-bijective).
    seed : the secret seed of the mapping (and of the VAE's training).
    vae_filters, vae_latent : channels of the VAE's first level and of its latent map.
    vae_epochs, vae_lr, vae_beta : VAE training (Adam; KL weight beta).
    """

    levels: int = 16
    bins: int = 64
    seed: int = 0
    vae_filters: int = 8
    vae_latent: int = 4
    vae_epochs: int = 20
    vae_lr: float = 1e-3
    vae_beta: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("levels", "bins", "vae_filters", "vae_latent", "vae_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"obfuscation {name} must be a positive integer, got {value!r}")
        if self.levels < 2 or self.levels >= self.bins:
            raise ConfigError(
                f"obfuscation levels must be in 2..bins-1 = {self.bins - 1} (non-bijective), "
                f"got {self.levels}"
            )
        for name in ("vae_lr", "vae_beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"obfuscation {name} must be a number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))


def intensity_mapping(seed: int, bins: int = 64, levels: int = 16) -> np.ndarray:
    """The secret lookup table: output value (float32 in [0, 1]) of each input bin.

    Every one of the ``levels`` output values is used by ``bins / levels`` bins (so the
    map is onto the levels and not one-to-one); which bins share a level and the order
    of the levels are random, drawn from ``seed``.
    """
    if not 2 <= levels < bins:
        raise ValueError(f"need 2 <= levels < bins for a non-bijective map, got {levels}, {bins}")
    rng = np.random.default_rng([seed, bins, levels])
    assignment = rng.permutation(np.arange(bins) % levels)
    values = rng.permutation(levels).astype(np.float32) / (levels - 1)
    return values[assignment]


def build_vae(config: ObfuscationConfig) -> nn.Module:
    """A small 3D VAE: two stride-2 convolutions to a latent map (1/4 resolution) and back."""
    import torch
    from torch import nn

    c, z = config.vae_filters, config.vae_latent

    class VAE3D(nn.Module):
        multiple = 4

        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Conv3d(1, c, 3, stride=2, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv3d(c, 2 * c, 3, stride=2, padding=1),
                nn.LeakyReLU(0.1),
            )
            self.mu = nn.Conv3d(2 * c, z, 1)
            self.logvar = nn.Conv3d(2 * c, z, 1)
            self.decoder = nn.Sequential(
                nn.ConvTranspose3d(z, 2 * c, 2, stride=2),
                nn.LeakyReLU(0.1),
                nn.ConvTranspose3d(2 * c, c, 2, stride=2),
                nn.LeakyReLU(0.1),
                nn.Conv3d(c, 1, 3, padding=1),
            )

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            h = self.encoder(x)
            mu, logvar = self.mu(h), self.logvar(h).clamp(-10, 10)
            sample = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            return torch.sigmoid(self.decoder(sample)), mu, logvar

    return VAE3D()


def vae_loss(recon: Any, x: Any, mu: Any, logvar: Any, beta: float) -> Any:
    """Voxel-mean squared error plus ``beta`` times the mean KL divergence to N(0, 1)."""
    import torch

    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    return torch.mean((recon - x) ** 2) + beta * kl


def train_vae(
    images: list[np.ndarray],
    config: ObfuscationConfig,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
) -> tuple[nn.Module, list[float]]:
    """Train the VAE on ``images`` (the attack set), one image per Adam step.

    ``progress`` is called as ``(step, total, "train-vae")`` and may raise ``JobCancelled``.
    Returns the VAE in eval mode (``vae.history``: its
    :class:`~inversion_audit.training.fit.FitHistory`) and the step losses.
    """
    import torch

    from ..devices import get_device
    from ..training.fit import fit
    from ..training.loop import seed_everything, stack_images, to_device

    dev = get_device(device)
    x_all = stack_images(images, "image")
    if any(s % 4 for s in x_all.shape[2:]):
        raise ValueError(f"VAE input grid {tuple(x_all.shape[2:])} must be divisible by 4")
    if dev.type == "cuda":
        x_all = x_all.pin_memory()
    rng = seed_everything(config.seed)
    vae = build_vae(config).to(dev)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.vae_lr)

    def epoch_batches(epoch: int) -> Iterator[torch.Tensor]:
        for k in rng.permutation(x_all.shape[0]):
            yield to_device(x_all[[int(k)]], dev)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        recon, mu, logvar = vae(x)
        return vae_loss(recon.float(), x, mu.float(), logvar.float(), config.vae_beta)

    run = fit(
        vae,
        optimizer,
        epoch_batches,
        loss_of,
        dev,
        epochs=config.vae_epochs,
        steps_per_epoch=x_all.shape[0],
        progress=progress,
        stage="train-vae",
    )
    vae.eval()
    vae.history = run
    vae.seconds = run.seconds
    return vae, run.step_loss


class Obfuscator:
    """What leaves the hospital: ``mapping(VAE(x))`` of a preprocessed scan in [0, 1].

    ``obfuscator(image)`` takes and returns numpy arrays; :meth:`tensor` does the same on
    a batch (B, 1, X, Y, Z) on any device.
    """

    def __init__(self, vae: nn.Module, config: ObfuscationConfig) -> None:
        self.vae = vae.eval()
        self.config = config
        self.lut = intensity_mapping(config.seed, config.bins, config.levels)

    def tensor(self, x: Any) -> Any:
        import torch

        device = next(self.vae.parameters()).device
        with torch.no_grad():
            recon, _, _ = self.vae(x.float().to(device))
            idx = (recon * self.config.bins).floor().clamp(0, self.config.bins - 1).long()
            out = torch.from_numpy(self.lut).to(device)[idx]
        return out.to(x.device, x.dtype)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from ..training.loop import stack_images

        return self.tensor(stack_images([image]))[0, 0].cpu().numpy()


class _ObfuscatedEncode:
    """``model.encode`` replaced: obfuscate the input batch, then the model's own encoder."""

    def __init__(self, model: nn.Module, obfuscator: Obfuscator) -> None:
        self.model = model
        self.obfuscator = obfuscator

    def __call__(self, x: Any) -> Any:
        return type(self.model).encode(self.model, self.obfuscator.tensor(x))


def obfuscate_inputs(model: nn.Module, obfuscator: Obfuscator) -> nn.Module:
    """Attach the obfuscation to ``model`` (in place): ``encode`` and ``model(x)`` see
    ``obfuscator(x)``. Weights are untouched."""
    model.encode = _ObfuscatedEncode(model, obfuscator)
    model.obfuscation = obfuscator.config
    return model
