"""Score a fold's reconstructions against every candidate: SSIM, correlation, PSNR, deformation, Dice
(and, opt-in, SSIM and correlation inside each candidate's brain)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ..data.preprocess import Preprocessed
from ..io import Volume
from ..progress import ProgressCallback, report

__all__ = ["brain_mask", "common_affine", "score_fold"]

log = logging.getLogger(__name__)


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


def brain_mask(candidate: Preprocessed) -> np.ndarray:
    """The candidate's brain on its preprocessed grid: labels > 0, else its foreground mask."""
    if candidate.labels is not None and (candidate.labels > 0).any():
        return candidate.labels > 0
    return np.asarray(candidate.mask, dtype=bool)


def score_fold(
    reconstructions: dict[str, np.ndarray],
    candidates: dict[str, Preprocessed],
    matching,
    segment_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    label_map: dict | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    registration_workers: int = 1,
) -> tuple[list[tuple[str, str, str, float]], dict[tuple[str, str], np.ndarray]]:
    """Score reconstructions (preprocessed space) against candidates.

    Returns long-format rows ``(reconstruction_id, candidate_id, metric, value)``
    and the deformation magnitude maps keyed by ``(reconstruction_id, candidate_id)``.
    Deformation runs only on each reconstruction's SSIM top-k candidates, one ITK thread
    per registration and ``registration_workers`` registrations at once (reproducible
    whatever the count), or on Dask when ``matching.scheduler``/``n_workers`` is set.
    """
    from ..matching import ScoreMatrix, top_k_mask
    from ..metrics import correlation_matrix, dice, psnr, register_pairs, ssim_matrix

    rec_ids, cand_ids = list(reconstructions), list(candidates)
    R = np.stack([reconstructions[i] for i in rec_ids]).astype(np.float32)
    C = np.stack([candidates[j].image for j in cand_ids]).astype(np.float32)
    metrics = matching.metrics
    rows: list[tuple[str, str, str, float]] = []

    def add(metric: str, values: np.ndarray) -> None:
        for a, i in enumerate(rec_ids):
            for b, j in enumerate(cand_ids):
                if np.isfinite(values[a, b]):
                    rows.append((i, j, metric, float(values[a, b])))

    S = ssim_matrix(
        R,
        C,
        data_range=1.0,
        device=device,
        progress=lambda d, t, s: report(progress, d, t, "ssim matrix"),
    )
    add("ssim", S)
    if "correlation" in metrics:
        add("correlation", correlation_matrix(R, C))
    if "ssim_brain" in metrics or "correlation_brain" in metrics:
        brain = np.stack([brain_mask(candidates[j]) for j in cand_ids])
        if "ssim_brain" in metrics:
            add(
                "ssim_brain",
                ssim_matrix(
                    R,
                    C,
                    data_range=1.0,
                    mask=brain,
                    device=device,
                    progress=lambda d, t, s: report(progress, d, t, "ssim matrix (brain)"),
                ),
            )
        if "correlation_brain" in metrics:
            add("correlation_brain", correlation_matrix(R, C, mask=brain))
    if "psnr" in metrics:
        add("psnr", np.array([[psnr(r, c, data_range=1.0) for c in C] for r in R]))
    maps: dict[tuple[str, str], np.ndarray] = {}
    if "deformation" in metrics:
        spacing = tuple(
            float(s) for s in np.sqrt((next(iter(candidates.values())).affine[:3, :3] ** 2).sum(0))
        )
        aff = common_affine(C.shape[1:], spacing)
        pairs = top_k_mask(ScoreMatrix("ssim", S, rec_ids, cand_ids, True), matching.top_k)
        moving = [Volume(r, aff) for r in R]
        fixed = [Volume(c, aff) for c in C]
        masks = [candidates[j].mask for j in cand_ids]
        if matching.scheduler or matching.n_workers:
            # registrations run on Dask workers; their results land in the shared on-disk cache
            from ..matching.distributed import deformation_matrix

            deformation_matrix(
                moving,
                fixed,
                rec_ids,
                cand_ids,
                masks,
                pairs=pairs,
                preset=matching.deformation_preset,
                top_k=matching.top_k,
                scheduler_address=matching.scheduler,
                n_workers=matching.n_workers,
                progress=lambda d, t, s: report(progress, d, t, s),
            )
        D = np.full(S.shape, np.nan)
        todo = []
        for a, b in zip(*np.nonzero(pairs), strict=True):
            if float(R[a].max()) == float(R[a].min()):
                log.warning(
                    "deformation %s -> %s skipped: the reconstruction is constant",
                    rec_ids[a],
                    cand_ids[b],
                )
            else:
                todo.append((int(a), int(b)))
        results, failed = register_pairs(
            moving,
            fixed,
            todo,
            masks,
            preset=matching.deformation_preset,
            workers=registration_workers,
            progress=progress,
            stage=f"deformation (SSIM top-{matching.top_k})",
        )
        for (a, b), message in failed.items():
            log.warning("deformation %s -> %s failed: %s", rec_ids[a], cand_ids[b], message)
        for (a, b), res in results.items():
            D[a, b] = res.mean_displacement_mm
            maps[(rec_ids[a], cand_ids[b])] = res.magnitude.array
        add("deformation", D)
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
