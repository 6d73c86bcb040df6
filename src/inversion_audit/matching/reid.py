"""A learned re-identifier (``reid`` metric): seed 003's Siamese verification network in 3D.

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
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..attack.config import InversionConfig
    from ..progress import ProgressCallback
    from .ranking import ScoreMatrix

__all__ = [
    "REID_FORMAT",
    "ReidConfig",
    "build_reid_network",
    "cross_fit_reconstructions",
    "load_reid",
    "reid_matrix",
    "reid_scores",
    "save_reid",
    "train_reid",
]

REID_FORMAT = "inversion-audit-reid/1"


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
        }
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"reid.{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or self.lr <= 0:
            raise ConfigError(f"reid.lr must be a positive number, got {self.lr!r}")
        object.__setattr__(self, "lr", float(self.lr))

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
    import torch.nn.functional as F

    from ..devices import get_device
    from ..progress import report
    from ..training.loop import autocast, grad_scaler, memory_format, seed_everything, to_device

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
    scaler = grad_scaler(dev)
    k = config.negatives_per_positive
    steps_per_epoch = -(-n * (1 + k) // config.batch_size)
    total = config.epochs * steps_per_epoch
    history: dict[str, Any] = {"epoch_loss": [], "n_subjects": n, "device": str(dev)}
    step = 0
    report(progress, 0, total, "train-reid")
    for _ in range(config.epochs):
        net.train()
        others = (np.arange(n)[:, None] + rng.integers(1, n, (n, k))) % n
        a = np.r_[np.arange(n), np.repeat(np.arange(n), k)]
        b = np.r_[np.arange(n), others.ravel()]
        y = np.r_[np.ones(n), np.zeros(n * k)].astype(np.float32)
        order = rng.permutation(a.size)
        losses = []
        for s in range(0, a.size, config.batch_size):
            rows = order[s : s + config.batch_size]
            ra, ob = xr[a[rows]], xo[b[rows]]
            flip = torch.from_numpy(rng.random(rows.size) < 0.5)
            ra = torch.where(flip[:, None, None, None, None], ra.flip(2), ra)
            ob = torch.where(flip[:, None, None, None, None], ob.flip(2), ob)
            both = to_device(torch.cat([ra, ob]), dev).contiguous(memory_format=memory_format(dev))
            target = to_device(torch.from_numpy(y[rows]), dev)
            opt.zero_grad(set_to_none=True)
            with autocast(dev):
                e = net["encoder"](both).float()
            logit = net["head"]((e[: rows.size] - e[rows.size :]).abs()).squeeze(1)
            loss = F.binary_cross_entropy_with_logits(logit, target)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
            step += 1
            report(progress, step, total, "train-reid")
        history["epoch_loss"].append(float(np.mean(losses)))
    history["config"] = config.to_dict()
    return net.eval(), history


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


def reid_matrix(
    net: nn.Module,
    reconstruction_ids: list[str],
    reconstructions: list[np.ndarray],
    candidate_ids: list[str],
    candidates: list[np.ndarray],
    input_size: int = 32,
    device: str = "auto",
) -> ScoreMatrix:
    """The ``reid`` :class:`~inversion_audit.matching.ranking.ScoreMatrix` (higher is better)."""
    from .ranking import ScoreMatrix

    values = reid_scores(net, reconstructions, candidates, input_size, device)
    return ScoreMatrix("reid", values, list(reconstruction_ids), list(candidate_ids), True)


def save_reid(
    path: str | os.PathLike[str], net: nn.Module, metadata: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>.safetensors`` and the ``<stem>.json`` sidecar atomically (no subject ids)."""
    from safetensors.torch import save

    from ..checkpoints import FORBIDDEN_KEYS, _versions, checkpoint_paths
    from ..io import atomic_write_bytes, atomic_write_json

    metadata = dict(metadata or {})
    bad = [k for k in metadata if k in FORBIDDEN_KEYS]
    if bad:
        raise ValueError(f"reid metadata must not hold subject ids (keys {bad})")
    weights, sidecar = checkpoint_paths(path)
    weights = weights.with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    data = save(state)
    record = {
        **metadata,
        "format": REID_FORMAT,
        "kind": "reid",
        "architecture": "reid",
        "arch_args": dict(net.arch_args),
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(data).hexdigest()[:16],
        "tensors": {k: list(v.shape) for k, v in state.items()},
        "versions": _versions(),
    }
    atomic_write_bytes(weights, data)
    atomic_write_json(sidecar, record)
    return weights, sidecar


def load_reid(path: str | os.PathLike[str], device: str = "cpu") -> nn.Module:
    """Load a re-identifier saved by :func:`save_reid`; ``net.metadata`` holds the sidecar.

    The sidecar is untrusted: its format, architecture arguments (bounded integers) and the
    weights' hash are checked; every tensor must match the rebuilt network by name and shape.
    """
    from ..checkpoints import checkpoint_paths, load_weights
    from ..devices import get_device
    from ..io import file_hash
    from ..io.untrusted import read_json
    from ..io.weights import state_mismatch

    weights, sidecar = checkpoint_paths(path)
    meta = read_json(sidecar, CheckpointError, "reid sidecar")
    if not isinstance(meta, dict) or meta.get("format") != REID_FORMAT:
        raise CheckpointError(f"{sidecar}: not a reid sidecar (format {REID_FORMAT})")
    args = meta.get("arch_args")
    ok = isinstance(args, dict) and set(args) == {"base_filters", "embed_dim"}
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in args.values())
    if not ok or not (1 <= args["base_filters"] <= 256 and 1 <= args["embed_dim"] <= 4096):
        raise CheckpointError(f"{sidecar}: arch_args must be base_filters and embed_dim integers")
    if weights.suffix != ".safetensors":
        raise CheckpointError(f"{weights}: reid weights must be .safetensors")
    if weights.exists() and file_hash(weights) != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights}: weights do not match their sidecar (hash differs)")
    state = load_weights(weights)
    net = build_reid_network(args["base_filters"], args["embed_dim"])
    wrong = state_mismatch(net.state_dict(), state)
    if wrong:
        raise CheckpointError(
            f"{weights}: tensors do not match the reid network: {'; '.join(wrong)}"
        )
    net.load_state_dict(state, strict=True)
    net.metadata = meta  # type: ignore[attr-defined]
    return net.eval().to(get_device(device))
