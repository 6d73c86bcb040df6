"""Pieces shared by target and inversion training: tensors, batches, devices, history."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "TrainingHistory",
    "stack_images",
    "batches",
    "autocast",
    "grad_scaler",
    "full_precision",
    "memory_format",
    "seed_everything",
    "recalibrate_batchnorm",
    "to_device",
]


@dataclass
class TrainingHistory:
    """What happened during training; saved into checkpoint sidecars.

    Attributes
    ----------
    kind : ``"target"`` or ``"inversion"``.
    config : the resolved config as a dict (e.g. with the inferred ``n_classes``).
    epoch_loss : mean training loss per epoch.
    val_loss : validation loss per epoch (empty without a validation split).
    step_loss : training loss per optimiser step.
    best_epoch : epoch (0-based) whose weights were kept.
    stopped_by : ``"budget"`` or ``"plateau"`` (early stopping); see ``training.fit``.
    privacy : the DP-SGD record (ε, δ, sampling; see ``training.dp``); empty without DP.
    """

    kind: str
    config: dict[str, Any]
    device: str
    n_train: int
    n_val: int = 0
    epoch_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    loss_terms: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None
    stopped_early: bool = False
    stopped_by: str = "budget"
    privacy: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0

    @property
    def final_loss(self) -> float | None:
        """Mean training loss of the last epoch."""
        return self.epoch_loss[-1] if self.epoch_loss else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and return a numpy generator for shuffling and splits."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def stack_images(
    images: list[np.ndarray], what: str = "image", ids: list[str] | None = None
) -> torch.Tensor:
    """Stack 3D arrays of one shape into a float32 CPU tensor (N, 1, X, Y, Z)."""
    if not images:
        raise ValueError(f"need at least one {what}")
    shape = np.shape(images[0])
    for k, img in enumerate(images):
        name = ids[k] if ids else f"{what} {k}"
        if np.ndim(img) != 3:
            raise ValueError(f"{name}: expected a 3D array, got shape {np.shape(img)}")
        if np.shape(img) != shape:
            raise ValueError(
                f"{name}: shape {np.shape(img)} differs from {shape}; preprocess all subjects with one fixed shape"
            )
        if not np.isfinite(img).all():
            raise ValueError(f"{name}: NaN or Inf voxels")
    return torch.from_numpy(np.stack([np.asarray(i, dtype=np.float32) for i in images])[:, None])


def batches(n: int, batch_size: int, rng: np.random.Generator | None) -> Iterator[list[int]]:
    """Row indices per batch; shuffled by ``rng`` (``None`` keeps the order)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield [int(i) for i in order[start : start + batch_size]]


def memory_format(device: torch.device) -> torch.memory_format:
    """channels-last is about twice as fast for 3D convolutions on CPU (oneDNN)."""
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


def autocast(device: torch.device) -> AbstractContextManager:
    """float16 autocast on CUDA; nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


def full_precision(device: torch.device) -> AbstractContextManager:
    """Autocast switched off on CUDA (a float32 island inside an AMP step); nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", enabled=False)
    return nullcontext()


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler that is active on CUDA only."""
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device`` in its memory format; on CUDA from pinned memory, non-blocking
    (a CPU tensor not yet pinned, such as a gathered batch, is pinned first)."""
    if device.type == "cuda" and t.device.type == "cpu" and not t.is_pinned():
        t = t.pin_memory()
    t = t.to(device, non_blocking=device.type == "cuda")
    return t.contiguous(memory_format=memory_format(device)) if t.ndim == 5 else t


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, items: Iterable[Any], forward: Callable[[Any], object]
) -> None:
    """Recompute BatchNorm running statistics as exact averages over the training data.

    After a few hundred steps the momentum averages still lag the weights, and
    eval-mode outputs drift from train-mode ones; one no-grad pass of ``forward(item)``
    over ``items`` in train mode fixes that ("precise BN"). No-op without BatchNorm.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for item in items:
        forward(item)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
