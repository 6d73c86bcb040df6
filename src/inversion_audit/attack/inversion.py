"""Training the inversion decoder on the attack set with the target encoder frozen (paper eq. 1)."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from ..devices import get_device
from ..io import state_hash
from ..models.latent import Latent
from ..progress import ProgressCallback, report
from ..training.loop import (
    TrainingHistory,
    autocast,
    batches,
    grad_scaler,
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
            return cache.select(rows).to(dev, non_blocking=dev.type == "cuda")
        with torch.no_grad(), autocast(dev):
            x = to_device(x_all[rows], dev) if x is None else x
            return target.encode(x).for_threat_model(config.threat_model)

    torch.manual_seed(config.seed)
    decoder = build_inversion_decoder(target, config.threat_model).to(
        dev, memory_format=memory_format(dev)
    )
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr)
    scaler = grad_scaler(dev)
    loss_fn = InversionLoss(config.ssim_weight, config.gradient_weight)
    history = TrainingHistory("inversion", config.to_dict(), str(dev), int(x_all.shape[0]))
    total = config.epochs * -(-x_all.shape[0] // config.batch_size)
    report(progress, 0, total, "train-inversion")
    terms: dict[str, list[float]] = {}
    for epoch in range(config.epochs):
        decoder.train()
        losses = []
        for rows in batches(x_all.shape[0], config.batch_size, rng):
            x = to_device(x_all[rows], dev)
            latent = latent_of(rows, x)
            optimizer.zero_grad(set_to_none=True)
            with autocast(dev):
                loss = loss_fn(decoder(latent).float(), x)
            scaler.scale(loss).backward()
            _assert_no_gradient(target)
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
            for name, value in loss_fn.terms.items():
                terms.setdefault(name, []).append(value)
            history.step_loss.append(losses[-1])
            history.steps += 1
            report(progress, history.steps, total, "train-inversion")
        history.epoch_loss.append(float(np.mean(losses)))
        log.info(
            "inversion epoch %d/%d: loss %.5f", epoch + 1, config.epochs, history.epoch_loss[-1]
        )

    def forward(rows: list[int]) -> None:
        with autocast(dev):
            decoder(latent_of(rows))

    recalibrate_batchnorm(decoder, batches(x_all.shape[0], config.batch_size, None), forward)
    history.best_epoch = config.epochs - 1
    history.loss_terms = {name: float(np.mean(v[-len(losses) :])) for name, v in terms.items()}
    history.seconds = time.perf_counter() - start
    if state_hash(target) != before:
        raise RuntimeError("the target network's weights changed during inversion training")
    decoder.eval()
    decoder.target_weights_sha256 = before
    return decoder, history
