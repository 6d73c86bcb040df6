"""Score a fold's reconstructions against every candidate: SSIM, correlation, PSNR, deformation, Dice."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..data.preprocess import Preprocessed
from ..io import Volume
from ..progress import ProgressCallback, report

__all__ = ["score_fold", "common_affine"]


def common_affine(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """A centred RAS affine shared by all arrays of the preprocessed space.

    Reconstructions and candidates are compared in the preprocessed space, voxel
    for voxel, so registration sees them on one grid rather than in each
    subject's native world position.
    """
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    return affine


def score_fold(
    reconstructions: dict[str, np.ndarray],
    candidates: dict[str, Preprocessed],
    matching,
    segment_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    label_map: dict | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
) -> tuple[list[tuple[str, str, str, float]], dict[tuple[str, str], np.ndarray]]:
    """Score reconstructions (preprocessed space) against candidates.

    Returns long-format rows ``(reconstruction_id, candidate_id, metric, value)``
    and the deformation magnitude maps keyed by ``(reconstruction_id, candidate_id)``.
    Deformation runs only on each reconstruction's SSIM top-k candidates.
    """
    from ..metrics import correlation, deformation, dice, psnr, ssim_matrix

    rec_ids, cand_ids = list(reconstructions), list(candidates)
    R = np.stack([reconstructions[i] for i in rec_ids]).astype(np.float32)
    C = np.stack([candidates[j].image for j in cand_ids]).astype(np.float32)
    metrics = matching.metrics
    rows: list[tuple[str, str, str, float]] = []
    report(progress, 0, 1, "ssim matrix")
    S = ssim_matrix(R, C, data_range=1.0, device=device, progress=lambda d, t, s: report(progress, d, t, "ssim matrix"))
    for a, i in enumerate(rec_ids):
        for b, j in enumerate(cand_ids):
            rows.append((i, j, "ssim", float(S[a, b])))
    n_pairs = len(rec_ids) * len(cand_ids)
    if "correlation" in metrics or "psnr" in metrics:
        k = 0
        for a, i in enumerate(rec_ids):
            for b, j in enumerate(cand_ids):
                if "correlation" in metrics:
                    rows.append((i, j, "correlation", float(correlation(R[a], C[b]))))
                if "psnr" in metrics:
                    rows.append((i, j, "psnr", float(psnr(R[a], C[b], data_range=1.0))))
                k += 1
            report(progress, k, n_pairs, "correlation/psnr")
    maps: dict[tuple[str, str], np.ndarray] = {}
    if "deformation" in metrics:
        shape = C.shape[1:]
        spacing = tuple(float(s) for s in np.sqrt((next(iter(candidates.values())).affine[:3, :3] ** 2).sum(0)))
        aff = common_affine(shape, spacing)
        top = np.argsort(-S, axis=1, kind="stable")[:, : matching.top_k]
        pairs = [(a, b) for a in range(len(rec_ids)) for b in top[a]]
        for n, (a, b) in enumerate(pairs):
            i, j = rec_ids[a], cand_ids[b]
            res = deformation(
                Volume(R[a], aff),
                Volume(C[b], aff),
                fixed_mask=candidates[j].mask,
                preset=matching.deformation_preset,
            )
            rows.append((i, j, "deformation", float(res.mean_displacement_mm)))
            maps[(i, j)] = res.magnitude.array
            report(progress, n + 1, len(pairs), f"deformation (SSIM top-{matching.top_k})")
    if "dice" in metrics and segment_fn is not None:
        from ..training import apply_label_map

        for a, i in enumerate(rec_ids):
            truth = candidates[i].labels
            if truth is None:
                continue
            truth = apply_label_map(truth, label_map)
            _, d_rec = dice(segment_fn(R[a]), truth)
            _, d_orig = dice(segment_fn(candidates[i].image), truth)
            rows.append((i, i, "dice_reconstruction", float(d_rec)))
            rows.append((i, i, "dice_original", float(d_orig)))
            report(progress, a + 1, len(rec_ids), "dice")
    return rows, maps
