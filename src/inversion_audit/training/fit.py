"""The one training loop: target, inversion decoder, re-identifier and obfuscation VAE.

:func:`fit` runs epochs of optimiser steps until a budget (epochs and/or steps) is spent or
a monitored loss stops improving (early stopping with ``patience`` and ``min_delta``, as in
Prechelt, "Early stopping - but when?", 1998). On CUDA it uses float16 autocast with a
gradient scaler (mixed precision, Micikevicius et al., ICLR 2018), sets
``cudnn.benchmark`` and keeps the step losses on the device, copying them to the host
once per epoch. An optional learning-rate scheduler is stepped once per epoch (on the
monitored loss for ``ReduceLROnPlateau``), and the rate each epoch ran at is recorded.
Progress is reported per step; a callback may raise
:class:`~inversion_audit.errors.JobCancelled`, which leaves :func:`fit` with the history
so far attached as ``exc.history`` (``stopped_by == "cancel"``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import JobCancelled
from ..progress import ProgressCallback, report
from .loop import autocast, grad_scaler

__all__ = ["STOP_REASONS", "FitHistory", "fit"]

#: why a run ended: its budget was spent, its monitored loss stopped improving, or a
#: progress callback cancelled it
STOP_REASONS = ("budget", "plateau", "cancel")

log = logging.getLogger(__name__)


@dataclass
class FitHistory:
    """What :func:`fit` did.

    Attributes
    ----------
    train_loss : mean training loss of each epoch (a step budget may cut the last one short).
    val_loss : the validation hook's value after each epoch (empty without a hook).
    step_loss : training loss of each optimiser step.
    lr : learning rate of the first parameter group at the start of each epoch.
    best_epoch : epoch (0-based) whose weights were kept: the best validation epoch with a
        hook, else the last.
    stopped_by : one of :data:`STOP_REASONS`.
    steps : optimiser steps taken.
    seconds : wall time of the loop.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_by: str = "budget"
    steps: int = 0
    seconds: float = 0.0

    @property
    def epochs(self) -> int:
        """Epochs run (the last possibly cut short by a step budget)."""
        return len(self.train_loss)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclasses.asdict(self)


class _Plateau:
    """Early stopping: ``patience`` epochs without an improvement of more than ``min_delta``."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_epoch, self.since_best = math.inf, None, 0

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value``; True when it improved on the best so far."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.since_best = value, epoch, 0
            return True
        self.since_best += 1
        return False

    @property
    def exhausted(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience


def _total(epochs: int | None, steps: int | None, steps_per_epoch: int | None) -> int:
    """The progress total: the step budget, or epochs times steps per epoch (0 if unknown)."""
    by_epochs = epochs * steps_per_epoch if epochs is not None and steps_per_epoch else None
    if steps is not None:
        return min(steps, by_epochs) if by_epochs is not None else steps
    return by_epochs or 0


def _step(scheduler: Any, monitored: float) -> None:
    """One epoch's scheduler step; ``ReduceLROnPlateau`` is given the monitored loss."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitored)
    else:
        scheduler.step()


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch_batches: Callable[[int], Iterable[Any]],
    loss_of: Callable[[Any], torch.Tensor],
    device: torch.device,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    steps_per_epoch: int | None = None,
    validate: Callable[[], float] | None = None,
    patience: int = 0,
    min_delta: float = 0.0,
    restore_best: bool = True,
    scheduler: Any = None,
    amp: bool = True,
    backward: Callable[[torch.Tensor], None] | None = None,
    after_backward: Callable[[], None] | None = None,
    progress: ProgressCallback | None = None,
    stage: str = "train",
) -> FitHistory:
    """Train ``model`` with ``optimizer`` until its budget is spent or its loss plateaus.

    Parameters
    ----------
    model : put in train mode at the start of every epoch.
    optimizer : stepped once per batch (through a gradient scaler on CUDA).
    epoch_batches : ``epoch_batches(k)`` yields the batches of epoch ``k``.
    loss_of : the loss (a scalar tensor) of one batch; runs under autocast with AMP.
    device : the device the model is on; AMP only when it is CUDA and ``amp`` is true.
    epochs, steps : the budget; training ends when either is spent (at least one is given).
    steps_per_epoch : for the progress total only.
    validate : called after every epoch (the model in whatever mode it leaves it); its value
        is monitored for early stopping and, with ``restore_best``, the weights of its best
        epoch are restored at the end. Without it the epoch's mean training loss is monitored.
        The best state is copied right after the hook returns, so what the hook leaves in
        the model (such as recalibrated BatchNorm statistics) is what is restored.
    patience, min_delta : stop after ``patience`` epochs (0: never) whose monitored value
        is not below the best so far minus ``min_delta``. A stop on the budget's last
        epoch counts as ``"budget"``.
    scheduler : a ``torch.optim.lr_scheduler`` scheduler of ``optimizer``, stepped after
        every epoch: ``ReduceLROnPlateau`` with the monitored value, any other with
        ``step()`` (so a ``CosineAnnealingLR``'s ``T_max`` counts epochs).
    amp : allow mixed precision (DP-SGD turns it off: per-sample clipping runs in float32).
    backward : replaces ``loss.backward()``; receives the (scaled) loss.
    after_backward : called between the backward pass and the optimiser step.
    progress : called as ``(step, total, stage)``; may raise ``JobCancelled``.
    stage : the progress stage name (and the log's prefix).

    Returns
    -------
    The :class:`FitHistory`.
    """
    if epochs is None and steps is None:
        raise ValueError("fit needs a budget: epochs, steps or both")
    if (epochs is not None and epochs < 1) or (steps is not None and steps < 1):
        raise ValueError(f"budget must be positive, got epochs={epochs}, steps={steps}")
    use_amp = amp and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp_device = device if use_amp else torch.device("cpu")
    scaler = grad_scaler(amp_device)
    run_backward = backward or (lambda loss: loss.backward())
    total = _total(epochs, steps, steps_per_epoch)
    history = FitHistory()
    plateau = _Plateau(patience, min_delta)
    best_state: dict[str, Any] | None = None
    start = time.perf_counter()
    report(progress, 0, total, stage)
    try:
        epoch = 0
        while epochs is None or epoch < epochs:
            model.train()
            history.lr.append(float(optimizer.param_groups[0]["lr"]))
            on_device: list[torch.Tensor] = []
            for batch in epoch_batches(epoch):
                optimizer.zero_grad(set_to_none=True)
                with autocast(amp_device):
                    loss = loss_of(batch)
                run_backward(scaler.scale(loss))
                if after_backward is not None:
                    after_backward()
                scaler.step(optimizer)
                scaler.update()
                on_device.append(loss.detach().float().reshape(()))
                history.steps += 1
                report(progress, history.steps, total, stage)
                if steps is not None and history.steps >= steps:
                    break
            if not on_device and epochs is None:
                raise ValueError(f"{stage}: epoch {epoch} has no batches")
            # one device-to-host copy per epoch, not one per step
            losses = torch.stack(on_device).cpu().tolist() if on_device else []
            history.step_loss.extend(losses)
            history.train_loss.append(float(np.mean(losses)) if losses else math.nan)
            monitored = history.train_loss[-1]
            if validate is not None:
                monitored = float(validate())
                history.val_loss.append(monitored)
            if plateau.update(monitored, epoch) and validate is not None and restore_best:
                best_state = copy.deepcopy(model.state_dict())
            history.best_epoch = plateau.best_epoch if validate is not None else epoch
            if scheduler is not None:
                _step(scheduler, monitored)
            log.info(
                "%s epoch %d%s: loss %.5f%s",
                stage,
                epoch + 1,
                f"/{epochs}" if epochs is not None else "",
                history.train_loss[-1],
                f", val {history.val_loss[-1]:.5f}" if history.val_loss else "",
            )
            epoch += 1
            budget_spent = (steps is not None and history.steps >= steps) or epoch == epochs
            if budget_spent:
                break
            if plateau.exhausted:
                history.stopped_by = "plateau"
                break
    except JobCancelled as exc:
        history.stopped_by = "cancel"
        history.seconds = time.perf_counter() - start
        exc.history = history  # type: ignore[attr-defined]
        raise
    if best_state is not None:
        model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    return history
