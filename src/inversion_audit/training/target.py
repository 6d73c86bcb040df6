"""Training a target segmentation network on the private set, and segmenting with it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..devices import get_device
from ..models import build_target_network
from ..progress import ProgressCallback
from .config import TargetConfig
from .fit import fit
from .loop import (
    TrainingHistory,
    autocast,
    batches,
    memory_format,
    recalibrate_batchnorm,
    seed_everything,
    stack_images,
    to_device,
)
from .losses import segmentation_loss

__all__ = ["train_target", "segment", "apply_label_map", "TRAINING_REVISION"]

#: bumped when a code change alters what ``train_target`` returns for the same config, so
#: that resumable studies retrain (2: BatchNorm statistics recomputed on the training crops)
TRAINING_REVISION = 2

log = logging.getLogger(__name__)


def apply_label_map(
    labels: np.ndarray, label_map: dict[int, int] | None, name: str = "labels"
) -> np.ndarray:
    """Map source labels to classes (int64) through ``label_map`` (``None``: unchanged).

    A non-zero label missing from the map is a ``ValueError`` naming ``name``.
    """
    labels = np.asarray(labels)
    present = np.unique(labels)
    if present.size and present.min() < 0:
        raise ValueError(f"{name}: negative labels")
    if label_map is None:
        return labels.astype(np.int64)
    missing = [int(v) for v in present if v != 0 and int(v) not in label_map]
    if missing:
        raise ValueError(f"{name}: labels {missing[:10]} are not in the label map")
    lut = np.zeros(int(present.max()) + 1, np.int64)
    for src, cls in label_map.items():
        if src < lut.size:
            lut[src] = cls
    return lut[labels]


class _PatchSampler:
    """Random training crops, centred on a labelled voxel two times in three (seeded)."""

    def __init__(self, y_all: torch.Tensor, patch_size: tuple[int, int, int] | None, rng) -> None:
        self.patch = None if patch_size is None else np.asarray(patch_size)
        self.rng = rng
        self.grid = np.asarray(y_all.shape[2:])
        self.foreground = []
        if self.patch is not None:
            # a subsample of the labelled voxels keeps memory small
            self.foreground = [np.argwhere(y[0].numpy() > 0)[::7] for y in y_all]
        self.y_all = y_all

    def batch(self, x_all: torch.Tensor, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.patch is None:
            return x_all[idx], self.y_all[idx]
        xs, ys = [], []
        for k in idx:
            fg = self.foreground[k]
            if len(fg) and self.rng.random() < 2 / 3:
                centre = fg[self.rng.integers(len(fg))]
            else:
                centre = np.array([self.rng.integers(g) for g in self.grid])
            lo = np.clip(centre - self.patch // 2, 0, self.grid - self.patch)
            box = tuple(slice(int(a), int(a + p)) for a, p in zip(lo, self.patch, strict=True))
            xs.append(x_all[(k, slice(None), *box)])
            ys.append(self.y_all[(k, slice(None), *box)])
        return torch.stack(xs), torch.stack(ys)


def _split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    if val_fraction <= 0 or n < 2:
        return list(range(n)), []
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    order = rng.permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def train_target(
    images: list[np.ndarray],
    labels: list[np.ndarray],
    config: TargetConfig,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    ids: list[str] | None = None,
) -> tuple[nn.Module, TrainingHistory]:
    """Train a target network on the private set with Dice + cross-entropy and Adam.

    Parameters
    ----------
    images : preprocessed images of one shape, divisible by ``config.multiple``.
    labels : label maps on the same grids; mapped through ``config.label_map``.
    config : architecture and training settings.
    device : ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``; AMP is used on CUDA only.
    progress : called as ``(step, total_steps, "train-target")``; may raise ``JobCancelled``.
    ids : subject ids, only used to name subjects in error messages.

    Returns
    -------
    The trained network in eval mode (``model.label_map`` set) and its :class:`TrainingHistory`.
    With a validation split the weights of the best validation epoch are kept. BatchNorm
    statistics are recomputed over the training images at the end.
    """
    dev = get_device(device)
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} label maps")
    x_all = stack_images(images, "image", ids)
    mapped = []
    for k, lab in enumerate(labels):
        name = ids[k] if ids else f"label map {k}"
        if np.shape(lab) != tuple(x_all.shape[2:]):
            raise ValueError(
                f"{name}: labels shape {np.shape(lab)} differs from image shape {tuple(x_all.shape[2:])}"
            )
        mapped.append(apply_label_map(lab, config.label_map, name))
    y_all = torch.from_numpy(np.stack(mapped)[:, None])
    highest = max(config.label_map.values()) if config.label_map else int(y_all.max())
    n_classes = config.n_classes or max(2, highest + 1)
    if int(y_all.max()) >= n_classes:
        raise ValueError(f"labels reach class {int(y_all.max())} but n_classes is {n_classes}")
    if any(s % config.multiple for s in x_all.shape[2:]):
        raise ValueError(
            f"image shape {tuple(x_all.shape[2:])} is not divisible by {config.multiple} (pool_size ** depth)"
        )
    grid = tuple(x_all.shape[2:])
    if config.patch_size is not None and any(
        p > g for p, g in zip(config.patch_size, grid, strict=True)
    ):
        raise ValueError(f"patch_size {config.patch_size} is larger than the image grid {grid}")
    if dev.type == "cuda":
        x_all, y_all = x_all.pin_memory(), y_all.pin_memory()

    rng = seed_everything(config.seed)
    train_rows, val_rows = _split(len(images), config.val_fraction, rng)
    model = build_target_network(**config.network_args(n_classes)).to(
        dev, memory_format=memory_format(dev)
    )
    private = None
    dp_config = getattr(config, "dp", None)
    if dp_config is not None:
        # DP-SGD: GroupNorm copy, optimizer built after it, no AMP (per-sample clipping in fp32)
        from .dp import PrivateTraining, make_dp_compatible

        model = make_dp_compatible(model)
        private = PrivateTraining(dp_config, len(train_rows), config.batch_size, config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    if private is not None:
        optimizer = private.attach(model, optimizer)
    loss_fn = segmentation_loss()
    resolved = {**config.to_dict(), "n_classes": n_classes}
    history = TrainingHistory("target", resolved, str(dev), len(train_rows), len(val_rows))
    sampler = _PatchSampler(y_all, config.patch_size, rng)
    passes = config.patches_per_subject if config.patch_size else 1
    n_items = len(train_rows) * passes

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rows_of_steps = (
            batches(n_items, config.batch_size, rng) if private is None else private.epoch(passes)
        )
        for rows in rows_of_steps:
            x, y = sampler.batch(x_all, [train_rows[r % len(train_rows)] for r in rows])
            yield to_device(x, dev), to_device(y, dev)

    def loss_of(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return loss_fn(model(batch[0]), batch[1])

    def validate() -> float:
        return _validation_loss(model, loss_fn, x_all, y_all, val_rows, dev)

    start = time.perf_counter()
    run = fit(
        model,
        optimizer,
        epoch_batches,
        loss_of,
        dev,
        epochs=config.epochs,
        steps_per_epoch=-(-n_items // config.batch_size),
        validate=validate if val_rows else None,
        patience=config.patience if val_rows else 0,
        amp=private is None,  # DP-SGD: per-sample clipping in float32
        backward=private.backward if private is not None else None,
        progress=progress,
        stage="train-target",
    )
    history.epoch_loss, history.val_loss = run.train_loss, run.val_loss
    history.step_loss, history.steps = run.step_loss, run.steps
    history.best_epoch, history.stopped_by = run.best_epoch, run.stopped_by
    history.stopped_early = run.stopped_by == "plateau"
    if private is not None:
        history.privacy = private.detach()
        log.info("target %s DP-SGD: %s", config.arch, history.privacy)

    def forward(rows: list[int]) -> None:
        # the statistics of what the network was trained on: crops when it trained on crops
        # (whole volumes, mostly background, halved the Dice of a 64^3-crop ixi-dev target)
        x, _ = sampler.batch(x_all, [train_rows[r % len(train_rows)] for r in rows])
        with autocast(dev):
            model(to_device(x, dev))

    recalibrate_batchnorm(model, batches(n_items, config.batch_size, None), forward)
    history.seconds = time.perf_counter() - start
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    model.label_map = config.label_map
    return model, history


@torch.no_grad()
def _validation_loss(model, loss_fn, x_all, y_all, rows, dev) -> float:
    model.eval()
    out = []
    for k in rows:
        with autocast(dev):
            loss = loss_fn(model(to_device(x_all[[k]], dev)), to_device(y_all[[k]], dev))
        out.append(loss.detach().float().reshape(()))
    return float(np.mean(torch.stack(out).cpu().tolist()))  # one device-to-host copy


def model_device(model: nn.Module, device: str | None) -> torch.device:
    """``device`` resolved, or the model's own device when ``device`` is ``None``."""
    if device is None:
        return next(model.parameters()).device
    return get_device(device)


@torch.no_grad()
def segment(target_model: nn.Module, image: np.ndarray, device: str | None = "auto") -> np.ndarray:
    """Segment one preprocessed image; returns class labels (int32) on the same grid.

    The model is put in eval mode and moved to ``device`` (``None``: where it is).
    Classes are the model's (after its label map), not the source labels.
    """
    dev = model_device(target_model, device)
    target_model.eval().to(dev, memory_format=memory_format(dev))
    x = to_device(stack_images([image]), dev)
    with autocast(dev):
        logits = target_model(x)
    return logits.argmax(1)[0].to("cpu", torch.int32).numpy()
