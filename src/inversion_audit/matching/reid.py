"""A learned re-identifier (``reid`` metric): the Siamese verification network of Packhäuser et al. (2022) in 3D.

Packhäuser et al. (Sci Rep 2022) verify whether two chest X-rays show the same patient with
a Siamese network: one shared feature extractor, the absolute difference of the two feature
vectors, a fully connected layer and a sigmoid. Here the extractor is a small 3D CNN, and the
attacker trains it on the attack set only, from realistic pairs made by cross-fitting: split
the attack set, train an inversion decoder on the other parts, reconstruct each part. A
reconstruction and its own original make a positive pair, a reconstruction and another
subject's original a negative one; no decoder saw the reconstructions it produced.

Scores are the verification logit (higher = same subject), so ``reid`` ranks candidates like
any higher-is-better metric. Weights: safetensors plus a JSON sidecar. Torch is imported on
first use; :class:`ReidConfig` loads without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..attack.config import InversionConfig
    from ..progress import ProgressCallback
    from ..training.fit import FitHistory

__all__ = [
    "ReidConfig",
    "build_reid_network",
    "cross_fit_reconstructions",
    "reid_scores",
    "train_reid",
]


@dataclass(frozen=True)
class ReidConfig:
    """Settings of the attacker's Siamese re-identifier.

    Attributes
    ----------
    epochs, lr, batch_size, seed : Adam training on balanced pairs; seeded.
    base_filters, embed_dim : width of the shared 3D encoder and length of its feature vector.
    input_size : volumes are resampled (trilinear) to ``input_size``^3 before the encoder.
    cross_fit_folds : parts of the attack set for cross-fitting the decoders (>= 2).
    negatives_per_positive : negative pairs drawn per positive pair in each epoch.
    mode : ``"patches"`` compares aligned full-resolution patches inside the candidate's brain
        (:mod:`inversion_audit.matching.reid_patches`); ``"volume"`` compares whole scans
        resampled to ``input_size``^3.
    patch_size, patch_stride, patches_per_subject, min_inside : the patches' edge (voxels), the
        step of the scoring grid, positions drawn per subject and epoch, and the least fraction
        of a patch inside the brain for it to count (``"patches"`` mode).
    """

    epochs: int = 40
    lr: float = 1e-3
    batch_size: int = 8
    base_filters: int = 8
    embed_dim: int = 64
    input_size: int = 32
    cross_fit_folds: int = 2
    negatives_per_positive: int = 1
    seed: int = 0
    mode: str = "patches"
    patch_size: int = 24
    patch_stride: int = 12
    patches_per_subject: int = 16
    min_inside: float = 0.75

    def __post_init__(self) -> None:
        limits = {
            "epochs": (1, 100_000),
            "batch_size": (2, 4096),
            "base_filters": (1, 256),
            "embed_dim": (1, 4096),
            "input_size": (8, 512),
            "cross_fit_folds": (2, 100),
            "negatives_per_positive": (1, 100),
            "seed": (0, 2**32 - 1),
            "patch_size": (16, 512),  # three stride-2 blocks leave >= 2^3 for the norm
            "patch_stride": (1, 512),
            "patches_per_subject": (1, 10_000),
        }
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"reid.{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or self.lr <= 0:
            raise ConfigError(f"reid.lr must be a positive number, got {self.lr!r}")
        object.__setattr__(self, "lr", float(self.lr))
        if self.mode not in ("patches", "volume"):
            raise ConfigError(f"reid.mode must be 'patches' or 'volume', got {self.mode!r}")
        m = self.min_inside
        if not isinstance(m, (int, float)) or isinstance(m, bool) or not 0 < m <= 1:
            raise ConfigError(f"reid.min_inside must be a number in (0, 1], got {m!r}")
        object.__setattr__(self, "min_inside", float(m))

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-safe dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReidConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` naming them."""
        from ..training.config import config_from_dict

        return config_from_dict(cls, data, "reid")


def build_reid_network(base_filters: int = 8, embed_dim: int = 64) -> nn.Module:
    """The Siamese network: ``encoder`` (shared 3D CNN -> feature vector) and ``head`` (|a - b| -> logit)."""
    from torch import nn

    def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
        return [
            nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1),
            nn.InstanceNorm3d(c_out, affine=True),
            nn.LeakyReLU(0.1, inplace=True),
        ]

    f = int(base_filters)
    layers: list[nn.Module] = []
    c = 1
    for k in range(3):
        layers += block(c, f * 2**k, 1) + block(f * 2**k, f * 2**k, 2)
        c = f * 2**k
    encoder = nn.Sequential(
        *layers, nn.AdaptiveAvgPool3d(4), nn.Flatten(), nn.Linear(c * 64, int(embed_dim))
    )
    net = nn.ModuleDict({"encoder": encoder, "head": nn.Linear(int(embed_dim), 1)})
    net.arch = "reid"  # type: ignore[attr-defined]
    net.arch_args = {"base_filters": f, "embed_dim": int(embed_dim)}  # type: ignore[attr-defined]
    return net


def _prepare(images: list[np.ndarray], size: int) -> torch.Tensor:
    """(N, 1, size, size, size) float32 CPU tensor, resampled trilinearly when needed."""
    import torch
    import torch.nn.functional as F

    from ..training.loop import stack_images

    x = stack_images([np.asarray(i, dtype=np.float32) for i in images])
    if tuple(x.shape[2:]) != (size,) * 3:
        x = F.interpolate(x, size=(size,) * 3, mode="trilinear", align_corners=False)
    return x.contiguous(memory_format=torch.contiguous_format)


def _embed(net: nn.Module, x: torch.Tensor, dev: torch.device, batch: int = 16) -> torch.Tensor:
    import torch

    from ..training.loop import autocast, memory_format, to_device

    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            xb = to_device(x[s : s + batch], dev).contiguous(memory_format=memory_format(dev))
            with autocast(dev):
                out.append(net["encoder"](xb).float())
    return torch.cat(out)


def cross_fit_reconstructions(
    target_model: nn.Module,
    images: list[np.ndarray],
    inversion_config: InversionConfig,
    folds: int = 2,
    device: str = "auto",
    ids: list[str] | None = None,
    progress: ProgressCallback | None = None,
) -> list[np.ndarray]:
    """Reconstruct every attack image with a decoder trained on the other parts of the attack set.

    The attack set is split into ``folds`` parts (seeded by ``inversion_config.seed``); each
    part is reconstructed by a decoder trained on the rest, so no reconstruction comes from a
    decoder that saw its own image (the realistic positives of :func:`train_reid`).
    """
    from ..attack.inversion import train_inversion
    from ..attack.reconstruction import reconstruct_many

    n = len(images)
    if folds < 2 or n < folds or n < 3:
        raise ValueError(f"cross-fitting needs >= 3 attack images and 2..{n} parts, got {folds}")
    part = np.random.default_rng(inversion_config.seed).permutation(n) % folds
    out: list[np.ndarray | None] = [None] * n
    for k in range(folds):
        test = np.flatnonzero(part == k)
        train = np.flatnonzero(part != k)
        decoder, _ = train_inversion(
            target_model,
            [images[i] for i in train],
            inversion_config,
            device,
            progress,
            [ids[i] for i in train] if ids else None,
        )
        recons = reconstruct_many(target_model, decoder, [images[i] for i in test], device)
        for i, r in zip(test, recons, strict=True):
            out[i] = r
    return out  # type: ignore[return-value]


def train_reid(
    reconstructions: list[np.ndarray],
    originals: list[np.ndarray],
    config: ReidConfig,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train the Siamese re-identifier on (reconstruction, original) pairs of the attack set.

    ``reconstructions[i]`` and ``originals[i]`` are the same subject (a positive pair); each
    epoch pairs every reconstruction with its own original and with
    ``negatives_per_positive`` random other originals (label 0). Both images of a pair are
    mirrored left-right together at random. Loss: binary cross-entropy on the logit of
    ``head(|encoder(a) - encoder(b)|)``. Returns the network in eval mode and a history dict.
    """
    import torch

    from ..devices import get_device
    from ..training.fit import fit
    from ..training.loop import memory_format, seed_everything

    n = len(reconstructions)
    if n != len(originals) or n < 2:
        raise ValueError(
            f"need >= 2 subjects with one reconstruction and one original each, got {n} and {len(originals)}"
        )
    dev = get_device(device)
    rng = seed_everything(config.seed)
    xr = _prepare(reconstructions, config.input_size)
    xo = _prepare(originals, config.input_size)
    if dev.type == "cuda":
        xr, xo = xr.pin_memory(), xo.pin_memory()
    net = build_reid_network(config.base_filters, config.embed_dim).to(dev)
    net = net.to(memory_format=memory_format(dev))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    k = config.negatives_per_positive

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        others = (np.arange(n)[:, None] + rng.integers(1, n, (n, k))) % n
        a = np.r_[np.arange(n), np.repeat(np.arange(n), k)]
        b = np.r_[np.arange(n), others.ravel()]
        y = np.r_[np.ones(n), np.zeros(n * k)].astype(np.float32)
        order = rng.permutation(a.size)
        for s in range(0, a.size, config.batch_size):
            rows = order[s : s + config.batch_size]
            yield xr[a[rows]], xo[b[rows]], y[rows]

    run = fit(
        net,
        opt,
        epoch_batches,
        lambda batch: siamese_loss(net, *batch, rng),
        dev,
        epochs=config.epochs,
        steps_per_epoch=-(-n * (1 + k) // config.batch_size),
        progress=progress,
        stage="train-reid",
    )
    return net.eval(), reid_history(run, n, dev, config)


def reid_history(run: FitHistory, n: int, dev: torch.device, config: ReidConfig) -> dict[str, Any]:
    """The re-identifier's history dict from a :class:`~inversion_audit.training.fit.FitHistory`."""
    return {
        "epoch_loss": run.train_loss,
        "n_subjects": n,
        "device": str(dev),
        "steps": run.steps,
        "stopped_by": run.stopped_by,
        "seconds": run.seconds,
        "config": config.to_dict(),
    }


def siamese_loss(
    net: nn.Module,
    first: torch.Tensor,
    second: torch.Tensor,
    labels: np.ndarray,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Loss of pairs ``(first[i], second[i])`` with 0/1 ``labels``; each pair is mirrored
    left-right together at random. Binary cross-entropy on the logit of
    ``head(|encoder(a) - encoder(b)|)``; the head runs in float32."""
    import torch
    import torch.nn.functional as F

    from ..training.loop import full_precision, memory_format, to_device

    dev = next(net.parameters()).device
    flip = torch.from_numpy(rng.random(len(labels)) < 0.5)[:, None, None, None, None]
    first = torch.where(flip, first.flip(2), first)
    second = torch.where(flip, second.flip(2), second)
    both = to_device(torch.cat([first, second]), dev).contiguous(memory_format=memory_format(dev))
    target = to_device(torch.from_numpy(np.asarray(labels, dtype=np.float32)), dev)
    e = net["encoder"](both).float()
    with full_precision(dev):
        logit = net["head"]((e[: len(labels)] - e[len(labels) :]).abs()).squeeze(1)
        return F.binary_cross_entropy_with_logits(logit, target)


def reid_scores(
    net: nn.Module,
    reconstructions: list[np.ndarray],
    candidates: list[np.ndarray],
    input_size: int = 32,
    device: str = "auto",
) -> np.ndarray:
    """Verification logits ``[N, M]`` of every (reconstruction, candidate) pair; higher = same subject."""
    import torch

    from ..devices import get_device

    dev = get_device(device)
    net = net.eval().to(dev)
    er = _embed(net, _prepare(reconstructions, input_size), dev)
    ec = _embed(net, _prepare(candidates, input_size), dev)
    with torch.no_grad():
        out = [net["head"]((er[i : i + 1] - ec).abs()).squeeze(1) for i in range(er.shape[0])]
    return torch.stack(out).float().cpu().numpy().astype(np.float64)
