"""The one scoring pipeline: reconstructions against candidates in the preprocessed space.

The study's score stage and ``inversion-audit match`` both call :func:`score_reconstructions`,
so a pair gets the same numbers either way: SSIM, correlation and PSNR over the whole grid,
SSIM and correlation inside each candidate's brain (opt-in), Dice of the target's
segmentations, and the deformation of each reconstruction's SSIM top-k candidates, registered
with ANTs or greedy (``registration``; the ``paper`` preset is ANTs only). Registrations run
with one ITK thread and a fixed seed each, several at once in child processes (``threads =
"auto"``: one per core) or on Dask, so the results do not depend on the thread or worker count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..io import Volume
from ..progress import ProgressCallback, report

if TYPE_CHECKING:
    from ..data.preprocess import Preprocessed
    from ..metrics.deformation import DeformationResult

__all__ = [
    "PIPELINE_METRICS",
    "REGISTRATION_SEED",
    "MatchOptions",
    "PairScores",
    "ScoringOptions",
    "brain_mask",
    "comparison_grid",
    "register_candidate",
    "registration_of",
    "score_reconstructions",
]

log = logging.getLogger(__name__)

#: the sampling seed of every registration, ANTs or greedy (with one ITK thread each:
#: reproducible)
REGISTRATION_SEED = 0
#: what the pipeline can compute; ``dice`` needs the target network's ``segment_fn``
PIPELINE_METRICS = (
    "ssim",
    "correlation",
    "psnr",
    "deformation",
    "dice",
    "ssim_brain",
    "correlation_brain",
    "reid",
)


class ScoringOptions(Protocol):
    """What the pipeline reads of its options (the study config's ``[matching]`` table has it)."""

    metrics: Sequence[str]
    top_k: int
    deformation_preset: str
    scheduler: str | None
    n_workers: int | None
    #: ``"ants"`` or ``"greedy"``; options without it are read as ``"ants"``
    registration: str


@dataclass(frozen=True)
class MatchOptions:
    """Scoring options outside a study (``inversion-audit match``); the same fields as a
    study config's ``[matching]`` table."""

    metrics: Sequence[str] = ("ssim", "correlation", "psnr", "deformation")
    top_k: int = 5
    deformation_preset: str = "fast"
    scheduler: str | None = None
    n_workers: int | None = None
    registration: str = "ants"


@dataclass
class PairScores:
    """The pipeline's output.

    ``rows``: ``(reconstruction_id, candidate_id, metric, value)``, computed scores only;
    ``maps``: deformation magnitude (mm) per registered pair, on the candidate's grid;
    ``failures``: registrations that failed, with their message.
    """

    rows: list[tuple[str, str, str, float]] = field(default_factory=list)
    maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)


def brain_mask(candidate: Preprocessed) -> np.ndarray:
    """The candidate's brain on its preprocessed grid: labels > 0, else its foreground mask."""
    if candidate.labels is not None and (candidate.labels > 0).any():
        return candidate.labels > 0
    return np.asarray(candidate.mask, dtype=bool)


def comparison_grid(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """The centred affine both volumes of a pair get for registration, so that ANTs compares
    anatomy voxel for voxel rather than the subjects' positions in their scanners."""
    from ..metrics.deformation import centred_affine

    return centred_affine(tuple(shape), tuple(spacing))


def registration_of(options: ScoringOptions, registration: str | None = None) -> str:
    """The backend the options ask for: ``registration`` if given, else the options'
    ``registration``, else ``"ants"``."""
    return registration or getattr(options, "registration", None) or "ants"


def _spacing(candidate: Preprocessed) -> tuple[float, ...]:
    return tuple(float(s) for s in np.sqrt((candidate.affine[:3, :3] ** 2).sum(0)))


def score_reconstructions(
    reconstructions: dict[str, np.ndarray],
    candidates: dict[str, Preprocessed],
    options: ScoringOptions,
    segment_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    label_map: dict | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    registration_workers: int | str = 1,
    reid_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    registration: str | None = None,
) -> PairScores:
    """Score every reconstruction (preprocessed grid) against every candidate.

    ``options.metrics`` picks from :data:`PIPELINE_METRICS` (SSIM is always computed: the
    deformation runs on each reconstruction's SSIM top-``options.top_k``). Registrations use
    the backend ``registration`` (``None``: ``options.registration``, else ``"ants"``) with
    ``options.deformation_preset``, each candidate's foreground mask, one ITK thread and
    ``registration_workers`` child processes at once (``"auto"``: one per core,
    :func:`~inversion_audit.devices.resolve_threads`), or Dask when ``options.scheduler`` or
    ``options.n_workers`` is set. A backend without the preset (greedy has no ``paper``) is a
    :class:`~inversion_audit.errors.ConfigError` before anything is computed. Every array must be on the candidates' common grid.
    ``reid`` needs ``reid_fn(R, C, brains)``: the learned re-identifier's ``[N, M]`` scores
    (higher = same subject), given the candidates' brain masks; a trained one is
    :class:`~inversion_audit.matching.reid_scorer.ReidScorer`. It is scored in this one call,
    beside the one SSIM matrix; asking for ``reid`` without it is a
    :class:`~inversion_audit.errors.ConfigError`.
    """
    from ..devices import resolve_threads
    from ..metrics import check_registration, correlation_matrix, psnr, ssim_matrix

    backend = registration_of(options, registration)
    workers = resolve_threads(registration_workers)
    if "deformation" in options.metrics:
        check_registration(backend, options.deformation_preset)
    rec_ids, cand_ids = list(reconstructions), list(candidates)
    R = np.stack([reconstructions[i] for i in rec_ids]).astype(np.float32)
    C = np.stack([candidates[j].image for j in cand_ids]).astype(np.float32)
    if R.shape[1:] != C.shape[1:]:
        raise ValueError(
            f"reconstructions have shape {R.shape[1:]}, candidates {C.shape[1:]}: "
            "they must share the preprocessed grid"
        )
    metrics = options.metrics
    out = PairScores()

    def add(metric: str, values: np.ndarray) -> None:
        for a, i in enumerate(rec_ids):
            for b, j in enumerate(cand_ids):
                if np.isfinite(values[a, b]):
                    out.rows.append((i, j, metric, float(values[a, b])))

    def stage(name: str) -> ProgressCallback:
        return lambda d, t, s: report(progress, d, t, name)

    S = ssim_matrix(R, C, data_range=1.0, device=device, progress=stage("ssim matrix"))
    add("ssim", S)
    if "correlation" in metrics:
        add("correlation", correlation_matrix(R, C))
    brain = None
    if {"ssim_brain", "correlation_brain", "reid"} & set(metrics):
        brain = np.stack([brain_mask(candidates[j]) for j in cand_ids])
        if "ssim_brain" in metrics:
            add(
                "ssim_brain",
                ssim_matrix(
                    R, C, data_range=1.0, mask=brain, device=device, progress=stage("ssim (brain)")
                ),
            )
        if "correlation_brain" in metrics:
            add("correlation_brain", correlation_matrix(R, C, mask=brain))
    if "psnr" in metrics:
        add("psnr", np.array([[psnr(r, c, data_range=1.0) for c in C] for r in R]))
    if "deformation" in metrics:
        add(
            "deformation",
            _deformation(
                R, C, S, rec_ids, cand_ids, candidates, options, out, workers, progress, backend
            ),
        )
    if "reid" in metrics:
        if reid_fn is None:
            from ..errors import ConfigError

            raise ConfigError(
                "metric 'reid' needs a trained re-identifier (matching/reid.py); none was given"
            )
        values = np.asarray(reid_fn(R, C, brain), dtype=np.float64)
        if values.shape != S.shape:
            raise ValueError(f"reid_fn returned shape {values.shape}, not {S.shape}")
        add("reid", values)
    if "dice" in metrics and segment_fn is not None:
        out.rows.extend(_dice(R, rec_ids, candidates, segment_fn, label_map, progress))
    return out


def _deformation_pairs(S: np.ndarray, R: np.ndarray, rec_ids, cand_ids, top_k: int) -> list:
    from .ranking import ScoreMatrix, top_k_mask

    pairs = top_k_mask(ScoreMatrix("ssim", S, rec_ids, cand_ids, True), top_k)
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
    return todo


def _deformation(
    R: np.ndarray,
    C: np.ndarray,
    S: np.ndarray,
    rec_ids: list[str],
    cand_ids: list[str],
    candidates: dict[str, Preprocessed],
    options: ScoringOptions,
    out: PairScores,
    workers: int,
    progress: ProgressCallback | None,
    registration: str = "ants",
) -> np.ndarray:
    """Mean displacement (mm) of each reconstruction's SSIM top-k pairs (NaN elsewhere)."""
    from ..metrics import register_pairs

    grid = comparison_grid(C.shape[1:], _spacing(next(iter(candidates.values()))))
    moving = [Volume(r, grid) for r in R]
    fixed = [Volume(c, grid) for c in C]
    masks = [np.asarray(candidates[j].mask, dtype=bool) for j in cand_ids]
    # register_candidate below registers one pair exactly so: keep the two in step
    todo = _deformation_pairs(S, R, rec_ids, cand_ids, options.top_k)
    if options.scheduler or options.n_workers:
        # registrations run on Dask workers; their results land in the shared on-disk cache,
        # from which register_pairs below reads them (or registers a pair again if missing)
        from .distributed import deformation_matrix

        selected = np.zeros(S.shape, dtype=bool)
        for a, b in todo:
            selected[a, b] = True
        deformation_matrix(
            moving,
            fixed,
            rec_ids,
            cand_ids,
            masks,
            pairs=selected,
            preset=options.deformation_preset,
            top_k=options.top_k,
            scheduler_address=options.scheduler,
            n_workers=options.n_workers,
            progress=lambda d, t, s: report(progress, d, t, s),
            registration=registration,
        )
    results, failed = register_pairs(
        moving,
        fixed,
        todo,
        masks,
        preset=options.deformation_preset,  # type: ignore[arg-type]
        workers=workers,
        seed=REGISTRATION_SEED,
        progress=progress,
        stage=f"deformation (SSIM top-{options.top_k})",
        registration=registration,
    )
    D = np.full(S.shape, np.nan)
    for (a, b), message in failed.items():
        log.warning("deformation %s -> %s failed: %s", rec_ids[a], cand_ids[b], message)
        out.failures[(rec_ids[a], cand_ids[b])] = message
    for (a, b), res in results.items():
        D[a, b] = res.mean_displacement_mm
        out.maps[(rec_ids[a], cand_ids[b])] = res.magnitude.array
    return D


def _dice(
    R: np.ndarray,
    rec_ids: list[str],
    candidates: dict[str, Preprocessed],
    segment_fn: Callable[[np.ndarray], np.ndarray],
    label_map: dict | None,
    progress: ProgressCallback | None,
) -> list[tuple[str, str, str, float]]:
    """Mean Dice of the target's segmentation of each reconstruction and of its original."""
    from ..metrics import dice
    from ..training import apply_label_map

    rows = []
    for a, i in enumerate(rec_ids):
        truth = candidates[i].labels if i in candidates else None
        if truth is None:
            continue
        truth = apply_label_map(truth, label_map)
        _, d_rec = dice(segment_fn(R[a]), truth)
        _, d_orig = dice(segment_fn(candidates[i].image), truth)
        rows.append((i, i, "dice_reconstruction", float(d_rec)))
        rows.append((i, i, "dice_original", float(d_orig)))
        report(progress, a + 1, len(rec_ids), "dice")
    return rows


def register_candidate(
    reconstruction: np.ndarray,
    candidate: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, ...],
    preset: str = "fast",
    return_displacement: bool = False,
    registration: str = "ants",
) -> DeformationResult:
    """Register one reconstruction to one candidate as the pipeline does: both on the centred
    comparison grid, the mean displacement over the candidate's preprocessing ``mask``, one ITK
    thread and :data:`REGISTRATION_SEED` (so the study's stored result is a cache hit), with
    the backend ``registration`` (``"ants"`` or ``"greedy"``).

    Raises ``RuntimeError`` when the registration fails.
    """
    from ..metrics import register_pairs
    from ..metrics.deformation import deformation

    grid = comparison_grid(np.shape(candidate), spacing)
    moving = Volume(np.asarray(reconstruction, np.float32), grid)
    fixed = Volume(np.asarray(candidate, np.float32), grid)
    if return_displacement:  # the field is not kept by register_pairs
        return deformation(
            moving,
            fixed,
            fixed_mask=np.asarray(mask, bool),
            preset=preset,  # type: ignore[arg-type]
            threads=1,
            seed=REGISTRATION_SEED,
            return_displacement=True,
            registration=registration,
        )
    results, failed = register_pairs(
        [moving],
        [fixed],
        [(0, 0)],
        [np.asarray(mask, bool)],
        preset=preset,  # type: ignore[arg-type]
        seed=REGISTRATION_SEED,
        registration=registration,
    )
    if failed:
        raise RuntimeError(failed[(0, 0)])
    return results[(0, 0)]
