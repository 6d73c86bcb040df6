"""Typed settings of the inversion decoder's training (torch-free)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..models.latent import THREAT_MODELS
from ..training.config import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_SEED,
    check_int,
    check_number,
    config_from_dict,
    short_repr,
)

__all__ = ["InversionConfig"]


@dataclass(frozen=True)
class InversionConfig:
    """Settings of the attacker's inversion decoder, trained on the attack set.

    Attributes
    ----------
    threat_model : ``"bottleneck"`` (the paper's) or ``"bottleneck+skips"``.
    epochs, lr, batch_size, seed : Adam training; seeded.
    ssim_weight : weight of a 3D SSIM loss term added to the paper's squared error (eq. 1).
    gradient_weight : weight of an image-gradient difference term (sharper edges).
    flip_augment : also train on left-right mirrored attack images (doubles the data).
    """

    threat_model: str = "bottleneck"
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 2
    seed: int = 0
    ssim_weight: float = 0.0
    gradient_weight: float = 0.0
    flip_augment: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.threat_model, str) or self.threat_model not in THREAT_MODELS:
            raise ConfigError(
                f"inversion.threat_model must be one of {', '.join(THREAT_MODELS)}, "
                f"got {short_repr(self.threat_model)}"
            )
        check_int("inversion.epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("inversion.batch_size", self.batch_size, 1, MAX_BATCH)
        check_int("inversion.seed", self.seed, 0, MAX_SEED)
        for name in ("lr", "ssim_weight", "gradient_weight"):
            value = getattr(self, name)
            check_number(f"inversion.{name}", value)
            object.__setattr__(self, name, float(value))
        if self.lr <= 0 or self.ssim_weight < 0 or self.gradient_weight < 0:
            raise ConfigError("inversion.lr must be > 0 and the loss weights >= 0")
        if not isinstance(self.flip_augment, bool):
            raise ConfigError(
                f"inversion.flip_augment must be true or false, got {short_repr(self.flip_augment)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-safe dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InversionConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` naming them."""
        return config_from_dict(cls, data, "inversion")
