"""Batched SSIM of N reconstructions against M candidates, in torch (CPU or CUDA).

Equal to :func:`inversion_audit.metrics.ssim` pair by pair (itself equal to
scikit-image's SSIM with Gaussian weights), but much faster:

- Only the cropped SSIM map enters the mean, and every cropped voxel's window
  lies inside the image, so the filtering is a *valid* correlation: no padding.
- The Gaussian window is separable; each axis is filtered by one matrix product
  with a banded (Toeplitz) kernel matrix, which BLAS runs far faster than a
  1-channel convolution.
- Local means and variances are computed once per volume; each pair costs one
  filtered product ``G * (x y)`` (the cross term) plus a few element-wise ops.
- The constants are folded in (``2 G*(x y) + C2 = 2 G*(x y + C2/2)``), and on the
  CPU the element-wise part runs in cache-sized slabs.
- Pairs are processed in chunks sized to a memory budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..progress import ProgressCallback, report
from .ssim import K1, K2, window_radius

if TYPE_CHECKING:
    import torch

__all__ = ["ssim_matrix"]

_STAGE = "ssim matrix"


def _gaussian_kernel(sigma: float, radius: int) -> np.ndarray:
    """The same normalised kernel as ``scipy.ndimage.gaussian_filter1d``."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class _ValidGaussian:
    """Separable Gaussian 'valid' filtering of a batch ``[B, *spatial]`` by banded matrix products."""

    def __init__(
        self, spatial: tuple[int, ...], sigma: float, dtype, device, scale: float = 1.0
    ) -> None:
        import torch

        self.radius = r = window_radius(sigma)
        kernel = _gaussian_kernel(sigma, r)
        self.spatial = spatial
        self.cropped = tuple(n - 2 * r for n in spatial)
        self.bands = []
        for n in spatial:
            band = np.zeros((n - 2 * r, n))
            for i in range(n - 2 * r):
                band[i, i : i + 2 * r + 1] = kernel
            self.bands.append(torch.as_tensor(band, dtype=dtype, device=device))
        self.bands[-1] *= scale  # a constant factor, applied once by the first (last-axis) pass

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Filter ``x`` ``[B, *spatial]``; return ``[B, prod(cropped)]``."""
        import torch

        b = x.shape[0]
        if len(self.spatial) == 3:
            d, h, w = self.spatial
            dc, hc, wc = self.cropped
            y = x.reshape(b * d * h, w) @ self.bands[2].T  # last axis
            y = torch.matmul(self.bands[1], y.reshape(b * d, h, wc))  # middle axis
            y = torch.matmul(self.bands[0], y.reshape(b, d, hc * wc))  # first axis
        else:
            h, w = self.spatial
            hc, wc = self.cropped
            y = x.reshape(b * h, w) @ self.bands[1].T
            y = torch.matmul(self.bands[0], y.reshape(b, h, wc))
        return y.reshape(b, -1)


class _Stats:
    """Per-volume local statistics on the cropped grid, with the SSIM constants folded in.

    ``mu`` is the local mean, ``q = mu^2 + C1/2`` and ``v = sigma^2 + C2/2``, so that
    ``mu_x^2 + mu_y^2 + C1 = q_x + q_y`` and ``sigma_x^2 + sigma_y^2 + C2 = v_x + v_y``.
    """

    def __init__(self, volumes: torch.Tensor, filt: _ValidGaussian, c1: float, c2: float) -> None:
        self.x = volumes
        self.mu = filt(volumes)
        sq = self.mu * self.mu
        self.q = sq + c1 / 2
        self.v = filt(volumes * volumes).sub_(sq).add_(c2 / 2)


def _as_stack(arrays, name: str) -> np.ndarray:
    stack = np.asarray(arrays)
    if stack.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be an array [count, *spatial] of 2D or 3D images, got shape {stack.shape}"
        )
    if not np.isfinite(stack).all():
        raise ValueError(f"{name} hold NaN or Inf values")
    return stack


def _weights(mask, spatial, n_candidates, pad, dtype, device):
    """Cropped mask weights: ``None``, a shared ``[V]`` vector, or per-candidate ``[M, V]``."""
    import torch

    if mask is None:
        return None, False
    mask = np.asarray(mask, dtype=bool)
    crop = (slice(None),) + tuple(slice(pad, n - pad) for n in spatial)
    if mask.shape == tuple(spatial):
        w = mask[crop[1:]].reshape(-1)
        if not w.any():
            raise ValueError("mask has no voxels inside the SSIM border crop")
        return torch.as_tensor(w, dtype=dtype, device=device), False
    if mask.shape == (n_candidates, *spatial):
        w = mask[crop].reshape(n_candidates, -1)
        empty = np.flatnonzero(~w.any(axis=1))
        if empty.size:
            raise ValueError(
                f"mask of candidate index {int(empty[0])} has no voxels inside the SSIM border crop"
            )
        return torch.as_tensor(w, dtype=dtype, device=device), True
    raise ValueError(
        f"mask shape {mask.shape} must be {tuple(spatial)} or {(n_candidates, *spatial)}"
    )


def _mean_ssim(
    cross, xs: _Stats, i: int, ys: _Stats, sl: slice, c1: float, w, slab_elements: int | None
):
    """Sum over voxels of the SSIM maps of reconstruction ``i`` with candidates ``sl`` (weighted by ``w``).

    ``cross`` is ``2 G*(x y) + C2`` for these pairs, ``[c, V]``; it is overwritten.
    SSIM = (2 mu_x mu_y + C1) (2 cov + C2) / ((q_x + q_y) (v_x + v_y)).
    """
    import torch

    c, n_vox = cross.shape
    step = n_vox if slab_elements is None else max(256, slab_elements // c)
    acc = torch.float32 if cross.device.type == "mps" else torch.float64  # MPS has no float64
    total = torch.zeros(c, dtype=acc, device=cross.device)
    for a in range(0, n_vox, step):
        v = slice(a, min(n_vox, a + step))
        mx, my = xs.mu[i : i + 1, v], ys.mu[sl, v]
        num = cross[:, v].addcmul_(mx, my, value=-2.0)  # 2 cov + C2
        num.mul_(torch.addcmul(torch.full_like(my, c1), mx, my, value=2.0))
        den = torch.add(xs.q[i : i + 1, v], ys.q[sl, v]).mul_(
            torch.add(xs.v[i : i + 1, v], ys.v[sl, v])
        )
        smap = num.div_(den)
        if w is not None:
            smap.mul_(w[..., v])
        total += smap.sum(dim=1, dtype=acc)
    return total.cpu().double()


def ssim_matrix(
    reconstructions: np.ndarray,
    candidates: np.ndarray,
    data_range: float = 1.0,
    mask: np.ndarray | None = None,
    sigma: float = 1.5,
    device: str = "auto",
    memory_budget_mb: float = 1024.0,
    dtype: str = "float32",
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """SSIM of every reconstruction with every candidate.

    Parameters
    ----------
    reconstructions : array ``[N, *spatial]`` (2D or 3D images).
    candidates : array ``[M, *spatial]`` on the same grid.
    data_range : intensity range ``R`` of the SSIM constants (1.0 for preprocessed volumes).
    mask : ``None``; one boolean volume shared by all pairs; or ``[M, *spatial]``,
        one mask per candidate (e.g. each candidate's brain mask). The mean is
        taken over the mask voxels of the cropped SSIM map, as in :func:`ssim`.
    sigma : Gaussian window width in voxels.
    device : ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"`` (see :func:`inversion_audit.devices.get_device`).
    memory_budget_mb : approximate working memory for volumes, statistics and pair chunks.
    dtype : ``"float32"`` (default; agrees with scikit-image to ~1e-6) or ``"float64"``.
    progress : called as ``progress(done_pairs, total_pairs, "ssim matrix")``.

    Returns
    -------
    float64 array ``[N, M]``; entry ``[i, j]`` equals ``ssim(reconstructions[i], candidates[j], data_range, mask)``.
    """
    import torch

    from ..devices import get_device

    rec = _as_stack(reconstructions, "reconstructions")
    cand = _as_stack(candidates, "candidates")
    if rec.shape[1:] != cand.shape[1:]:
        raise ValueError(
            f"reconstruction shape {rec.shape[1:]} differs from candidate shape {cand.shape[1:]}"
        )
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    spatial = tuple(int(s) for s in rec.shape[1:])
    pad = window_radius(sigma)
    if min(spatial) < 2 * pad + 1:
        raise ValueError(
            f"image shape {spatial} is smaller than the SSIM window ({2 * pad + 1} voxels)"
        )
    dev = get_device(device)
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    n, m = len(rec), len(cand)
    out = np.empty((n, m), dtype=np.float64)
    if n == 0 or m == 0:
        return out

    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    filt = _ValidGaussian(spatial, sigma, tdtype, dev)
    cross_filt = _ValidGaussian(spatial, sigma, tdtype, dev, scale=2.0)
    half_c2 = torch.tensor(c2 / 2, dtype=tdtype, device=dev)
    # CPU: element-wise work in cache-sized slabs, each below torch's parallel grain
    # (32768 elements) so that it runs on one thread without synchronisation.
    slab_elements = 32768 if dev.type == "cpu" else None
    weights, per_candidate = _weights(mask, spatial, m, pad, tdtype, dev)
    n_vox = int(np.prod(filt.cropped))
    n_full = int(np.prod(spatial))
    item = torch.finfo(tdtype).bits // 8
    stat_bytes = item * (n_full + 3 * n_vox)  # volume + mu, q, v
    pair_bytes = item * (n_full + 5 * n_vox)  # product, filter passes, element-wise temporaries
    budget = max(memory_budget_mb, 1.0) * 2**20
    if (n + m) * stat_bytes <= budget / 2:
        row_block, col_block = n, m
    else:  # keep most candidates resident; reconstruction statistics are recomputed per candidate block
        slots = max(2, int(budget / 2 // stat_bytes))
        col_block = max(1, min(m, (3 * slots) // 4))
        row_block = max(1, slots - col_block)
    chunk = max(1, int((budget - (row_block + col_block) * stat_bytes) // pair_bytes))

    def load(stack: np.ndarray, lo: int, hi: int) -> _Stats:
        x = torch.as_tensor(np.ascontiguousarray(stack[lo:hi]), device=dev).to(tdtype)
        return _Stats(x, filt, c1, c2)

    done, total = 0, n * m
    report(progress, 0, total, _STAGE)
    with torch.no_grad():
        rows_cached: _Stats | None = None
        for c0 in range(0, m, col_block):
            c1_ = min(m, c0 + col_block)
            ys = load(cand, c0, c1_)
            for r0 in range(0, n, row_block):
                r1 = min(n, r0 + row_block)
                if row_block == n and rows_cached is not None:
                    xs = rows_cached
                else:
                    xs = load(rec, r0, r1)
                    if row_block == n:
                        rows_cached = xs
                for i in range(r1 - r0):
                    for j0 in range(0, c1_ - c0, chunk):
                        j1 = min(c1_ - c0, j0 + chunk)
                        sl = slice(j0, j1)
                        # 2 G*(x y) + C2 = 2 G*(x y + C2/2): the Gaussian sums to one
                        cross = cross_filt(torch.addcmul(half_c2, xs.x[i : i + 1], ys.x[sl]))
                        w = None
                        if weights is not None:
                            w = weights[c0 + j0 : c0 + j1] if per_candidate else weights
                        val = _mean_ssim(cross, xs, i, ys, sl, c1, w, slab_elements)
                        if weights is None:
                            val = val / n_vox
                        else:
                            val = val / w.sum(dim=-1).cpu().double()
                        out[r0 + i, c0 + j0 : c0 + j1] = val.cpu().numpy()
                        done += j1 - j0
                        report(progress, done, total, _STAGE)
    return out
