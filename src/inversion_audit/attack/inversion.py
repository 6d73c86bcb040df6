"""Training the inversion decoder on the attack set with the target encoder frozen (paper eq. 1)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..devices import get_device
from ..io import state_hash
from ..models.latent import Latent
from ..progress import ProgressCallback, report
from ..training.fit import fit
from ..training.loop import (
    TrainingHistory,
    autocast,
    batches,
    memory_format,
    recalibrate_batchnorm,
    seed_everything,
    stack_images,
    to_device,
)
from ..training.losses import InversionLoss
from .config import InversionConfig
from .decoder import InversionDecoder, build_inversion_decoder

__all__ = ["train_inversion", "freeze", "encode_images", "LATENT_CACHE_BYTES"]

#: latents of the attack set are computed once and kept in memory when they fit in this budget
LATENT_CACHE_BYTES = 2 * 1024**3

log = logging.getLogger(__name__)


def freeze(target_model: nn.Module) -> nn.Module:
    """Put the target in eval mode with ``requires_grad`` off and no stored gradient."""
    target_model.eval()
    for p in target_model.parameters():
        p.requires_grad_(False)
        p.grad = None
    return target_model


def _assert_no_gradient(target_model: nn.Module) -> None:
    leaked = [
        n for n, p in target_model.named_parameters() if p.requires_grad or p.grad is not None
    ]
    if leaked:
        raise RuntimeError(
            f"the target encoder must stay frozen, but gradients reach: {', '.join(leaked[:5])}"
        )


@torch.no_grad()
def encode_images(
    target_model: nn.Module,
    x: torch.Tensor,
    threat_model: str,
    device: torch.device,
    progress: ProgressCallback | None = None,
) -> Latent:
    """Latents Z = Enc(X) of a CPU image batch (N, 1, ...), kept on the CPU, one image at a time."""
    out = []
    for k in range(x.shape[0]):
        with autocast(device):
            lat = target_model.encode(to_device(x[[k]], device)).for_threat_model(threat_model)
        out.append(lat.to("cpu"))
        report(progress, k + 1, x.shape[0], "encode")
    return Latent.cat(out)


def train_inversion(
    target_model: nn.Module,
    images: list[np.ndarray],
    config: InversionConfig,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    ids: list[str] | None = None,
) -> tuple[InversionDecoder, TrainingHistory]:
    """Train an inversion decoder D^ minimising ``||D^(Enc(X)) - X||^2`` over the attack set.

    The target is frozen (eval mode, ``requires_grad`` off) and its weights are
    checked unchanged afterwards; no gradient may reach it (``RuntimeError`` otherwise).
    The attack set's latents are computed once and cached when they fit in
    :data:`LATENT_CACHE_BYTES`, else recomputed per step.

    Parameters
    ----------
    target_model : the trained target network (white box).
    images : the attack set, preprocessed like the target's training images.
    config : threat model and training settings.
    device : ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``; AMP is used on CUDA only.
    progress : called as ``(done, total, stage)`` for ``"encode"`` and ``"train-inversion"``.
    ids : subject ids, only used in error messages.

    Returns
    -------
    The decoder in eval mode (BatchNorm statistics recomputed over the attack set) and
    its :class:`~inversion_audit.training.loop.TrainingHistory`.
    """
    dev = get_device(device)
    x_all = stack_images(images, "image", ids)
    if config.flip_augment:
        x_all = torch.cat([x_all, x_all.flip(2)])
    target = freeze(target_model).to(dev, memory_format=memory_format(dev))
    before = state_hash(target)
    rng = seed_everything(config.seed)
    start = time.perf_counter()

    first = encode_images(target, x_all[:1], config.threat_model, dev)
    cache: Latent | None = None
    if first.nbytes * x_all.shape[0] <= LATENT_CACHE_BYTES:
        cache = encode_images(target, x_all, config.threat_model, dev, progress)
        if dev.type == "cuda":
            cache = cache.pin_memory()
    elif dev.type == "cuda":
        x_all = x_all.pin_memory()

    def latent_of(rows: list[int], x: torch.Tensor | None = None) -> Latent:
        if cache is not None:
            chosen = cache.select(rows)  # a gather: pinned again for a non-blocking copy
            if dev.type == "cuda":
                chosen = chosen.pin_memory()
            return chosen.to(dev, non_blocking=dev.type == "cuda")
        with torch.no_grad(), autocast(dev):
            x = to_device(x_all[rows], dev) if x is None else x
            return target.encode(x).for_threat_model(config.threat_model)

    torch.manual_seed(config.seed)
    decoder = build_inversion_decoder(target, config.threat_model).to(
        dev, memory_format=memory_format(dev)
    )
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr)
    loss_fn = InversionLoss(config.ssim_weight, config.gradient_weight)
    history = TrainingHistory("inversion", config.to_dict(), str(dev), int(x_all.shape[0]))
    epoch_terms: list[dict[str, torch.Tensor]] = []  # the loss terms of the current epoch

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, Latent]]:
        epoch_terms.clear()
        for rows in batches(x_all.shape[0], config.batch_size, rng):
            x = to_device(x_all[rows], dev)
            yield x, latent_of(rows, x)

    def loss_of(batch: tuple[torch.Tensor, Latent]) -> torch.Tensor:
        x, latent = batch
        loss = loss_fn(decoder(latent).float(), x)
        epoch_terms.append(loss_fn.tensor_terms)
        return loss

    run = fit(
        decoder,
        optimizer,
        epoch_batches,
        loss_of,
        dev,
        epochs=config.epochs,
        steps_per_epoch=-(-x_all.shape[0] // config.batch_size),
        after_backward=lambda: _assert_no_gradient(target),
        progress=progress,
        stage="train-inversion",
    )
    history.epoch_loss, history.step_loss, history.steps = run.train_loss, run.step_loss, run.steps
    history.stopped_by = run.stopped_by

    def forward(rows: list[int]) -> None:
        with autocast(dev):
            decoder(latent_of(rows))

    recalibrate_batchnorm(decoder, batches(x_all.shape[0], config.batch_size, None), forward)
    history.best_epoch = run.best_epoch
    history.loss_terms = {
        name: float(np.mean(torch.stack([t[name] for t in epoch_terms]).float().cpu().tolist()))
        for name in (epoch_terms[0] if epoch_terms else {})
    }
    history.seconds = time.perf_counter() - start
    if state_hash(target) != before:
        raise RuntimeError("the target network's weights changed during inversion training")
    decoder.eval()
    decoder.target_weights_sha256 = before
    return decoder, history
