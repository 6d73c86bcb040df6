"""Training the inversion decoder on the attack set with the target encoder frozen (paper eq. 1).

The attacker may hold out whole subjects of the attack set to train to convergence rather
than to a step count (see :mod:`.convergence`): the epochs become a budget, the validation
loss drives early stopping and an optional learning-rate schedule, and the decoder's
whole-volume SSIM and correlation on those subjects measure the attack's power without any
private data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from ..devices import get_device
from ..io import state_hash
from ..models.latent import Latent
from ..progress import ProgressCallback, report
from ..training.fit import fit
from ..training.loop import (
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
from .convergence import check_convergence_args, split_attack_set
from .decoder import InversionDecoder, build_inversion_decoder
from .history import InversionHistory, make_scheduler

__all__ = [
    "InversionHistory",
    "LATENT_CACHE_BYTES",
    "ValidationMetrics",
    "encode_images",
    "freeze",
    "train_inversion",
]

#: latents of the attack set are computed once and kept in memory when they fit in this budget
LATENT_CACHE_BYTES = 2 * 1024**3

#: scores a reconstruction (in [0, 1]) against its original, both on the preprocessed grid
ValidationMetrics = Callable[[np.ndarray, np.ndarray], Mapping[str, float]]

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


class _Latents:
    """Latents of a set of images: cached on the CPU when given, else encoded per request."""

    def __init__(
        self,
        target: nn.Module,
        x: torch.Tensor,
        cache: Latent | None,
        threat_model: str,
        dev: torch.device,
    ) -> None:
        self.target, self.x, self.cache = target, x, cache
        self.threat_model, self.dev = threat_model, dev

    def __call__(self, rows: list[int], x: torch.Tensor | None = None) -> Latent:
        dev = self.dev
        if self.cache is not None:
            chosen = self.cache.select(rows)  # a gather: pinned again for a non-blocking copy
            if dev.type == "cuda":
                chosen = chosen.pin_memory()
            return chosen.to(dev, non_blocking=dev.type == "cuda")
        with torch.no_grad(), autocast(dev):
            x = to_device(self.x[rows], dev) if x is None else x
            return self.target.encode(x).for_threat_model(self.threat_model)


def train_inversion(
    target_model: nn.Module,
    images: list[np.ndarray],
    config: InversionConfig,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    ids: list[str] | None = None,
    *,
    validation_fraction: float = 0.0,
    patience: int = 0,
    min_delta: float = 0.0,
    lr_schedule: str = "none",
    validation_metrics: ValidationMetrics | None = None,
) -> tuple[InversionDecoder, InversionHistory]:
    """Train an inversion decoder D^ minimising ``||D^(Enc(X)) - X||^2`` over the attack set.

    The target is frozen (eval mode, ``requires_grad`` off) and its weights are
    checked unchanged afterwards; no gradient may reach it (``RuntimeError`` otherwise).
    The attack set's latents are computed once and cached when they fit in
    :data:`LATENT_CACHE_BYTES`, else recomputed per step.

    Parameters
    ----------
    target_model : the trained target network (white box).
    images : the attack set, preprocessed like the target's training images.
    config : threat model and training settings; ``config.epochs`` is the epoch budget.
    device : ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``; AMP is used on CUDA only.
    progress : called as ``(done, total, stage)`` for ``"encode"`` and ``"train-inversion"``.
    ids : subject ids: images sharing an id are one subject of the validation split; also
        named in error messages.
    validation_fraction : share of the attack set's subjects held out for validation,
        drawn by ``config.seed`` (:func:`~.convergence.split_attack_set`); 0 (the default)
        trains on every image exactly as without these settings.
    patience, min_delta : stop once the validation loss has not improved by more than
        ``min_delta`` for ``patience`` epochs (0: train the whole budget).
    lr_schedule : ``"none"``, ``"plateau"`` (on the validation loss) or ``"cosine"`` (over the
        budget); see :func:`~.history.make_scheduler`.
    validation_metrics : scores a validation reconstruction (clipped to [0, 1]) against its
        original; the mean of each score is recorded in ``history.val_metrics``. The study
        passes whole-volume SSIM and correlation (:mod:`inversion_audit.metrics`, which this
        layer does not import).

    With a validation split the decoder returned is the one of the epoch with the lowest
    validation loss (not the last epoch's), with BatchNorm statistics recomputed over the
    training images before each validation: ``history.best_val_loss`` is exactly the loss
    of the returned decoder on the validation subjects.

    Returns
    -------
    The decoder in eval mode (BatchNorm statistics recomputed over the training images) and
    its :class:`~.history.InversionHistory`.
    """
    check_convergence_args(validation_fraction, patience, min_delta, lr_schedule)
    dev = get_device(device)
    x_all = stack_images(images, "image", ids)
    train_rows, val_rows = split_attack_set(len(images), validation_fraction, config.seed, ids)
    x_val = x_all[val_rows] if val_rows else None
    if val_rows:
        x_all = x_all[train_rows]  # validation subjects and their mirror images stay out
    if config.flip_augment:
        x_all = torch.cat([x_all, x_all.flip(2)])
    target = freeze(target_model).to(dev, memory_format=memory_format(dev))
    before = state_hash(target)
    rng = seed_everything(config.seed)
    start = time.perf_counter()

    tm = config.threat_model
    first = encode_images(target, x_all[:1], tm, dev)
    cache: Latent | None = None
    val_cache: Latent | None = None
    if first.nbytes * (x_all.shape[0] + len(val_rows)) <= LATENT_CACHE_BYTES:
        cache = encode_images(target, x_all, tm, dev, progress)
        if x_val is not None:
            val_cache = encode_images(target, x_val, tm, dev)
        if dev.type == "cuda":
            cache = cache.pin_memory()
    elif dev.type == "cuda":
        x_all = x_all.pin_memory()
    latent_of = _Latents(target, x_all, cache, tm, dev)

    torch.manual_seed(config.seed)
    decoder = build_inversion_decoder(target, tm).to(dev, memory_format=memory_format(dev))
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr)
    loss_fn = InversionLoss(config.ssim_weight, config.gradient_weight)
    history = InversionHistory(
        "inversion",
        config.to_dict(),
        str(dev),
        int(x_all.shape[0]),
        n_val=len(val_rows),
        budget_epochs=config.epochs,
        validation_fraction=float(validation_fraction),
        patience=patience,
        min_delta=float(min_delta),
        lr_schedule=lr_schedule,
    )
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

    def forward(rows: list[int]) -> None:
        with autocast(dev):
            decoder(latent_of(rows))

    def recalibrate() -> None:
        recalibrate_batchnorm(decoder, batches(x_all.shape[0], config.batch_size, None), forward)

    validate = None
    if x_val is not None:
        val_latent_of = _Latents(target, x_val, val_cache, tm, dev)
        val_loss_fn = InversionLoss(config.ssim_weight, config.gradient_weight)

        @torch.no_grad()
        def validate() -> float:
            recalibrate()  # the statistics the decoder keeps if this epoch turns out best
            losses = []
            for k in range(len(val_rows)):
                x = to_device(x_val[[k]], dev)
                with autocast(dev):
                    losses.append(val_loss_fn(decoder(val_latent_of([k])).float(), x))
            return float(torch.stack(losses).float().mean())

    run = fit(
        decoder,
        optimizer,
        epoch_batches,
        loss_of,
        dev,
        epochs=config.epochs,
        steps_per_epoch=-(-x_all.shape[0] // config.batch_size),
        validate=validate,
        patience=patience,
        min_delta=min_delta,
        scheduler=make_scheduler(optimizer, lr_schedule, config.epochs, patience, min_delta),
        after_backward=lambda: _assert_no_gradient(target),
        progress=progress,
        stage="train-inversion",
    )
    history.epoch_loss, history.step_loss, history.steps = run.train_loss, run.step_loss, run.steps
    history.val_loss, history.lr = run.val_loss, run.lr
    history.stopped_by, history.stopped_early = run.stopped_by, run.stopped_by == "plateau"
    if validate is None:
        recalibrate()
    # else: fit restored the best epoch's weights with the statistics its validation used
    history.best_epoch = run.best_epoch
    history.loss_terms = {
        name: float(np.mean(torch.stack([t[name] for t in epoch_terms]).float().cpu().tolist()))
        for name in (epoch_terms[0] if epoch_terms else {})
    }
    decoder.eval()
    if x_val is not None and validation_metrics is not None:
        history.val_metrics = _score(
            decoder, val_latent_of, [images[i] for i in val_rows], validation_metrics, dev
        )
    history.seconds = time.perf_counter() - start
    if state_hash(target) != before:
        raise RuntimeError("the target network's weights changed during inversion training")
    decoder.target_weights_sha256 = before
    return decoder, history


@torch.no_grad()
def _score(
    decoder: InversionDecoder,
    latent_of: _Latents,
    originals: list[np.ndarray],
    metrics: ValidationMetrics,
    dev: torch.device,
) -> dict[str, float]:
    """Mean of each score of the decoder's reconstructions (clipped to [0, 1], as
    :func:`~.reconstruction.reconstruct` returns them) against their originals."""
    scores: list[Mapping[str, float]] = []
    for k, original in enumerate(originals):
        with autocast(dev):
            out = decoder(latent_of([k]))
        rec = out[0, 0].float().clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
        scores.append(metrics(rec, np.asarray(original, dtype=np.float32)))
    return {str(name): float(np.mean([float(s[name]) for s in scores])) for name in scores[0]}
