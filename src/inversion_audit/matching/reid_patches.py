"""The re-identifier on brain patches: the Siamese network of Packhäuser et al. (2022), compared inside the brain.

A whole scan resampled to a small cube leaves the Siamese encoder of
:mod:`inversion_audit.matching.reid` 30 training pairs per fold and the brain's outline as its
easiest cue. Here the same shared encoder sees aligned full-resolution patches that lie inside
the candidate's brain: a reconstruction's patch and an original's patch at the same position
make a pair, so one subject gives many training pairs, and the score of a (reconstruction,
candidate) pair is the mean verification logit over the candidate's brain patches.

Patch positions are corners on a grid of step ``stride``; a position counts for a candidate
when at least ``min_inside`` of the patch is inside its brain mask. Training samples positions
at random (not only on the grid) from each original's own brain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..progress import ProgressCallback
    from .reid import ReidConfig

__all__ = ["inside_fraction", "patch_corners", "patch_reid_scores", "train_patch_reid"]


def patch_corners(shape: tuple[int, ...], size: int, stride: int) -> np.ndarray:
    """Corners ``[K, 3]`` of the ``size``^3 patches on a grid of step ``stride`` covering ``shape``."""
    axes = []
    for n in shape:
        if n < size:
            raise ValueError(f"patch size {size} exceeds the volume's extent {n}")
        last = n - size
        axes.append(np.unique(np.r_[np.arange(0, last + 1, stride), last]))
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def inside_fraction(masks: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    """Fraction ``[M, K]`` of each patch inside each mask (summed-area table, exact)."""
    m = np.asarray(masks, dtype=np.float64)
    s = np.pad(m.cumsum(1).cumsum(2).cumsum(3), ((0, 0), (1, 0), (1, 0), (1, 0)))
    x, y, z = corners.T
    X, Y, Z = x + size, y + size, z + size
    total = (
        s[:, X, Y, Z]
        - s[:, x, Y, Z]
        - s[:, X, y, Z]
        - s[:, X, Y, z]
        + s[:, x, y, Z]
        + s[:, x, Y, z]
        + s[:, X, y, z]
        - s[:, x, y, z]
    )
    return total / float(size**3)


def _crops(
    volumes: torch.Tensor, which: np.ndarray, corners: np.ndarray, size: int
) -> torch.Tensor:
    """``(len(which), 1, size, size, size)`` patches ``volumes[which[i]]`` at ``corners[i]``."""
    import torch

    out = [
        volumes[w, :, x : x + size, y : y + size, z : z + size]
        for w, (x, y, z) in zip(which, corners, strict=True)
    ]
    return torch.stack(out)


def _valid_corners(mask: np.ndarray, size: int, min_inside: float) -> np.ndarray:
    """Every corner (step 2) whose patch is at least ``min_inside`` inside ``mask``."""
    corners = patch_corners(mask.shape, size, 2)
    ok = inside_fraction(mask[None], corners, size)[0] >= min_inside
    if not ok.any():
        raise ValueError(f"no {size}^3 patch lies {min_inside:.0%} inside the brain mask")
    return corners[ok]


def train_patch_reid(
    reconstructions: list[np.ndarray],
    originals: list[np.ndarray],
    masks: list[np.ndarray],
    config: ReidConfig,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train the Siamese encoder on aligned brain patches of (reconstruction, original) pairs.

    Each epoch draws ``config.patches_per_subject`` positions inside every original's brain
    (``masks[i]``); at each, the reconstruction's patch and its own original's make a positive
    pair, and ``negatives_per_positive`` other originals' patches at the same position make
    negatives. Pairs are mirrored together at random. Loss: binary cross-entropy on
    ``head(|encoder(a) - encoder(b)|)``. Returns the network in eval mode and a history dict.
    """
    import torch

    from ..devices import get_device
    from ..training.fit import fit
    from ..training.loop import memory_format, seed_everything
    from .reid import build_reid_network, reid_history, siamese_loss

    n = len(reconstructions)
    if not n == len(originals) == len(masks) or n < 2:
        raise ValueError(f"need >= 2 subjects with a reconstruction, original and mask, got {n}")
    dev = get_device(device)
    rng = seed_everything(config.seed)
    size, per, k = config.patch_size, config.patches_per_subject, config.negatives_per_positive
    xr = torch.from_numpy(np.stack(reconstructions).astype(np.float32)[:, None])
    xo = torch.from_numpy(np.stack(originals).astype(np.float32)[:, None])
    valid = [_valid_corners(np.asarray(m, bool), size, config.min_inside) for m in masks]
    net = build_reid_network(config.base_filters, config.embed_dim).to(dev)
    net = net.to(memory_format=memory_format(dev))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        a = np.repeat(np.arange(n), per * (1 + k))
        other = (a + rng.integers(1, n, a.size)) % n
        positive = np.tile(np.r_[np.ones(per), np.zeros(per * k)], n).astype(bool)
        b = np.where(positive, a, other)
        # the position lies inside the brain of the original it is compared with
        corners = np.stack([valid[j][rng.integers(len(valid[j]))] for j in b])
        y = positive.astype(np.float32)
        order = rng.permutation(a.size)
        for s in range(0, a.size, config.batch_size):
            rows = order[s : s + config.batch_size]
            yield (
                _crops(xr, a[rows], corners[rows], size),
                _crops(xo, b[rows], corners[rows], size),
                y[rows],
            )

    run = fit(
        net,
        opt,
        epoch_batches,
        lambda batch: siamese_loss(net, *batch, rng),
        dev,
        epochs=config.epochs,
        steps_per_epoch=-(-n * per * (1 + k) // config.batch_size),
        progress=progress,
        stage="train-reid",
    )
    return net.eval(), reid_history(run, n, dev, config)


def _embed_patches(
    net: nn.Module, volumes: np.ndarray, corners: np.ndarray, size: int, dev: torch.device
) -> torch.Tensor:
    """Embeddings ``[V, K, D]`` of every volume's patch at every corner."""
    import torch

    from ..training.loop import autocast, memory_format, to_device

    x = torch.from_numpy(np.asarray(volumes, dtype=np.float32)[:, None])
    out = []
    with torch.no_grad():
        for v in range(x.shape[0]):
            rows = []
            for s in range(0, len(corners), 32):
                c = corners[s : s + 32]
                crops = _crops(x, np.full(len(c), v), c, size)
                crops = to_device(crops, dev).contiguous(memory_format=memory_format(dev))
                with autocast(dev):
                    rows.append(net["encoder"](crops).float())
            out.append(torch.cat(rows))
    return torch.stack(out)


def patch_reid_scores(
    net: nn.Module,
    reconstructions: np.ndarray,
    candidates: np.ndarray,
    candidate_masks: np.ndarray,
    config: ReidConfig,
    device: str = "auto",
) -> np.ndarray:
    """Mean verification logit ``[N, M]`` over each candidate's brain patches; higher = same subject.

    A candidate whose brain holds no patch ``min_inside`` inside gets NaN (not ranked by reid).
    """
    import torch

    from ..devices import get_device

    dev = get_device(device)
    net = net.eval().to(dev)
    size = config.patch_size
    corners = patch_corners(np.shape(candidates)[1:], size, config.patch_stride)
    use = inside_fraction(np.asarray(candidate_masks, bool), corners, size) >= config.min_inside
    keep = use.any(0)
    out = np.full((len(reconstructions), len(candidates)), np.nan)
    if not keep.any():
        return out
    corners, use = corners[keep], torch.from_numpy(use[:, keep])
    er = _embed_patches(net, reconstructions, corners, size, dev)
    ec = _embed_patches(net, candidates, corners, size, dev)
    with torch.no_grad():
        for i in range(er.shape[0]):
            logits = net["head"]((er[i][None] - ec).abs()).squeeze(-1).float().cpu()  # [M, K]
            counts = use.sum(1)
            sums = (logits * use).sum(1)
            ok = counts > 0
            out[i, ok.numpy()] = (sums[ok] / counts[ok]).numpy()
    return out
