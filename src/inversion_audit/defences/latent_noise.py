"""The ``latent-noise`` defence: every latent code the model releases is perturbed.

Under the paper's threat model the hospital runs the encoder and releases Z = Enc(X);
the defence releases Z' = Z + σ·sd(Z)·N(0, 1) (σ relative to the code's own standard
deviation, per image and per tensor) and/or Z quantised to a number of levels between
the code's minimum and maximum. Float tensors (bottleneck, U-Net skips) are perturbed;
SegNet's pooling indices are positions, not values, and are released as they are.

The wrapped model's ``encode`` releases the perturbed code, and its ``forward`` (the
segmentation, i.e. the utility) decodes that same released code. The attacker's decoder,
trained through ``encode``, trains on released codes, as it would in practice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..models.latent import Latent

__all__ = ["LatentNoise", "release_latents", "perturb"]


@dataclass(frozen=True)
class LatentNoise:
    """Settings of the released-code perturbation.

    Attributes
    ----------
    sigma : Gaussian noise sd relative to the code's sd (0: no noise).
    levels : quantise to this many levels (``None``: no quantisation); applied after noise.
    seed : seed of the noise generator (one stream per wrapped model).
    """

    sigma: float = 0.0
    levels: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)):
            raise ConfigError(f"latent-noise sigma must be a number, got {self.sigma!r}")
        object.__setattr__(self, "sigma", float(self.sigma))
        if self.sigma < 0:
            raise ConfigError(f"latent-noise sigma must be >= 0, got {self.sigma}")
        if self.levels is not None and (
            not isinstance(self.levels, int) or isinstance(self.levels, bool) or self.levels < 2
        ):
            raise ConfigError(
                f"latent-noise quantise levels must be an integer >= 2, got {self.levels!r}"
            )


def _perturb_tensor(
    z: torch.Tensor, noise: LatentNoise, generator: torch.Generator
) -> torch.Tensor:
    import torch

    out = z.float()
    dims = tuple(range(1, z.ndim))
    if noise.sigma > 0:
        sd = out.std(dim=dims, keepdim=True)
        draw = torch.randn(tuple(z.shape), generator=generator, dtype=torch.float32)
        out = out + noise.sigma * sd * draw.to(z.device)
    if noise.levels is not None:
        lo, hi = out.amin(dim=dims, keepdim=True), out.amax(dim=dims, keepdim=True)
        span = (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)
        steps = noise.levels - 1
        out = lo + torch.round((out - lo) / span * steps) / steps * span
    return out.to(z.dtype)


def perturb(latent: Latent, noise: LatentNoise, generator: torch.Generator) -> Latent:
    """The released code: bottleneck and skips perturbed; pooling indices unchanged."""
    return replace(
        latent,
        bottleneck=_perturb_tensor(latent.bottleneck, noise, generator),
        skips=tuple(_perturb_tensor(s, noise, generator) for s in latent.skips),
    )


class _ReleasedEncode:
    """``model.encode`` replaced: the model's own encoder, then :func:`perturb`."""

    def __init__(self, model: nn.Module, noise: LatentNoise) -> None:
        import torch

        self.model = model
        self.noise = noise
        self.generator = torch.Generator().manual_seed(noise.seed)

    def __call__(self, x: torch.Tensor) -> Latent:
        clean = type(self.model).encode(self.model, x)
        return perturb(clean, self.noise, self.generator)


def release_latents(model: nn.Module, noise: LatentNoise | dict[str, Any]) -> nn.Module:
    """Attach the defence to ``model`` (in place) and return it.

    ``model.encode`` then releases perturbed codes and ``model(x)`` segments from them.
    The weights are untouched (checkpoints and weight hashes are those of the undefended
    target); ``model.latent_defence`` records the settings.
    """
    if isinstance(noise, dict):
        noise = LatentNoise(**noise)
    if not hasattr(type(model), "encode"):
        raise ValueError(f"{type(model).__name__} has no encode(); cannot release its latents")
    model.encode = _ReleasedEncode(model, noise)
    model.latent_defence = noise
    return model
