"""What training an inversion decoder did: losses, stop, learning rates, validation scores."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..training.loop import TrainingHistory
from .convergence import PLATEAU_FACTOR, PLATEAU_MIN_LR_SHARE, plateau_patience

__all__ = ["InversionHistory", "make_scheduler"]


def _finite(value: float | None) -> float | None:
    """``value`` as a float, ``None`` when absent or not finite (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass
class InversionHistory(TrainingHistory):
    """A :class:`~inversion_audit.training.loop.TrainingHistory` with the decoder's convergence.

    Attributes (beside the training history's)
    ----------
    lr : learning rate of each epoch.
    budget_epochs : the epoch budget (``config.epochs``): the most the run could take.
    validation_fraction, patience, min_delta, lr_schedule : the settings it ran with.
    val_metrics : mean of each attacker-side score (``"ssim"``, ``"correlation"``) of the
        returned decoder on the validation subjects; empty without a split or a scorer.

    ``n_train`` counts the training images (mirrored ones included), ``n_val`` the
    validation images; ``val_loss`` holds the validation loss after each epoch.
    """

    lr: list[float] = field(default_factory=list)
    budget_epochs: int = 0
    validation_fraction: float = 0.0
    patience: int = 0
    min_delta: float = 0.0
    lr_schedule: str = "none"
    val_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        """Epochs trained (at most ``budget_epochs``)."""
        return len(self.epoch_loss)

    @property
    def best_val_loss(self) -> float | None:
        """Validation loss of the epoch whose weights were kept (the returned decoder's)."""
        if not self.val_loss or self.best_epoch is None:
            return None
        return self.val_loss[self.best_epoch]

    @property
    def final_val_loss(self) -> float | None:
        """Validation loss after the last epoch run."""
        return self.val_loss[-1] if self.val_loss else None

    @property
    def val_ssim(self) -> float | None:
        """Whole-volume SSIM of the returned decoder on its validation subjects."""
        return self.val_metrics.get("ssim")

    @property
    def val_correlation(self) -> float | None:
        """Grey-value correlation of the returned decoder on its validation subjects."""
        return self.val_metrics.get("correlation")

    def convergence(self) -> dict[str, Any]:
        """The sidecar's ``convergence`` table (JSON-safe; a non-finite number is ``None``)."""
        return {
            "stopped_by": self.stopped_by,
            "epochs_run": self.epochs_run,
            "budget_epochs": self.budget_epochs,
            "steps_run": self.steps,
            "best_epoch": self.best_epoch,
            "train_loss": [_finite(v) for v in self.epoch_loss],
            "val_loss": [_finite(v) for v in self.val_loss],
            "lr": [_finite(v) for v in self.lr],
            "final_val_loss": _finite(self.final_val_loss),
            "best_val_loss": _finite(self.best_val_loss),
            "validation_fraction": self.validation_fraction,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "lr_schedule": self.lr_schedule,
            "val_metrics": {k: _finite(v) for k, v in sorted(self.val_metrics.items())},
        }


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    budget_epochs: int,
    patience: int,
    min_delta: float,
) -> Any:
    """The ``torch.optim.lr_scheduler`` of ``schedule`` (``None`` for ``"none"``).

    ``"plateau"``: ``ReduceLROnPlateau`` on the validation loss, the rate times
    :data:`~.convergence.PLATEAU_FACTOR` after
    :func:`~.convergence.plateau_patience` epochs without an improvement of more than
    ``min_delta``, down to a thousandth of the initial rate. ``"cosine"``:
    ``CosineAnnealingLR`` from the initial rate to 0 over ``budget_epochs`` (stepped per epoch).
    """
    from torch.optim import lr_scheduler

    if schedule == "none":
        return None
    if schedule == "plateau":
        return lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=PLATEAU_FACTOR,
            patience=plateau_patience(patience),
            threshold=min_delta,
            threshold_mode="abs",
            min_lr=optimizer.param_groups[0]["lr"] * PLATEAU_MIN_LR_SHARE,
        )
    if schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=budget_epochs)
    raise ValueError(f"unknown lr_schedule {schedule!r}")
