"""The study's score stage: a fold's reconstructions through the one scoring pipeline
(:mod:`inversion_audit.matching.pipeline`), and its outputs in the study folder."""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..data.preprocess import Preprocessed
from ..io import write_volume
from ..matching.pipeline import PairScores, ScoringOptions, score_reconstructions
from ..progress import ProgressCallback
from .collect import concatenate_scores, write_scores
from .layout import StudyPaths, run_name
from .rankings import write_rankings
from .score_files import read_scores

__all__ = ["candidate_mask", "score_fold", "write_fold_scores", "write_match_study"]


def score_fold(
    reconstructions: dict[str, np.ndarray],
    candidates: dict[str, Preprocessed],
    matching: ScoringOptions,
    segment_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    label_map: dict | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    registration_workers: int = 1,
    reid_fn: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray] | None = None,
) -> tuple[list[tuple[str, str, str, float]], dict[tuple[str, str], np.ndarray]]:
    """Score reconstructions (preprocessed space) against candidates with
    :func:`~inversion_audit.matching.pipeline.score_reconstructions` (one call; the learned
    re-identifier ``reid_fn``, when given, is one of its scoring functions).

    Returns long-format rows ``(reconstruction_id, candidate_id, metric, value)``
    and the deformation magnitude maps keyed by ``(reconstruction_id, candidate_id)``.
    """
    scores = score_reconstructions(
        reconstructions,
        candidates,
        matching,
        segment_fn=segment_fn,
        label_map=label_map,
        device=device,
        progress=progress,
        registration_workers=registration_workers,
        reid_fn=reid_fn,
    )
    return scores.rows, scores.maps


def write_fold_scores(
    paths: StudyPaths,
    tags: tuple[int | None, str, str, str],
    reconstruction_ids: Iterable[str],
    rows: list[tuple[str, str, str, float]],
    maps: dict[tuple[str, str], np.ndarray],
    candidates: dict[str, Preprocessed],
    defence: str = "",
) -> list[Path]:
    """Write one fold of one run: its deformation maps and its score part.

    ``tags`` is ``(fold, arch, variant, threat_model)``, ``defence`` the run's defence tag
    (``""``: undefended); maps of an earlier scoring of these
    reconstructions are removed first, so that none outlives its scores.
    """
    fold, arch, variant, threat = tags
    run = run_name(arch, variant, threat, defence)
    folder = paths.deformation_dir(run)
    for sid in reconstruction_ids:
        for old in folder.glob(glob.escape(f"{sid}__") + "*_magnitude.nii.gz"):
            old.unlink()
    outs = [
        write_volume(paths.deformation(run, sid, cid), magnitude, candidates[cid].affine)
        for (sid, cid), magnitude in maps.items()
    ]
    tagged = [("" if fold is None else fold, arch, variant, threat, defence, *r) for r in rows]
    # fold None: scored outside a study's folds (inversion-audit match)
    outs.append(write_scores(paths.score_part(run, fold), tagged))
    return outs


def write_match_study(
    out: Path,
    tags: tuple[int | None, str, str, str],
    reconstructions: dict[str, np.ndarray],
    candidates: dict[str, Preprocessed],
    scores: PairScores,
    defence: str = "",
) -> dict:
    """Write scores made outside a study (``inversion-audit match``) as a study folder.

    The candidates (and their labels), the reconstructions as scored, the deformation maps,
    ``scores/scores.csv`` and ``rankings/<run>.csv`` go where a study keeps them
    (:class:`~.layout.StudyPaths`), so the folder opens wherever a study does. ``defence``:
    the run's defence tag (``""``: undefended). Returns the run's name and counts; its
    numbers are the report's (:func:`inversion_audit.report.summarize_study`).
    """
    from ..matching.pipeline import comparison_grid

    paths = StudyPaths(out)
    _, arch, variant, threat = tags
    run = run_name(arch, variant, threat, defence)
    for cid, pre in candidates.items():
        write_volume(paths.preprocessed(variant, cid), pre.image, pre.affine)
        if pre.labels is not None:
            labels = pre.labels.astype(np.int16)
            write_volume(paths.preprocessed_labels(variant, cid), labels, pre.affine)
    any_pre = next(iter(candidates.values()))
    fallback = comparison_grid(any_pre.shape, tuple(np.sqrt((any_pre.affine[:3, :3] ** 2).sum(0))))
    for rid, rec in reconstructions.items():
        affine = candidates[rid].affine if rid in candidates else fallback
        write_volume(paths.reconstruction(run, rid, "preprocessed"), rec, affine)
    part = write_fold_scores(
        paths, tags, reconstructions, scores.rows, scores.maps, candidates, defence
    )
    write_rankings(paths, read_scores(concatenate_scores(paths, {part[-1].name})))
    return {
        "run": run,
        "n_reconstructions": len(reconstructions),
        "n_candidates": len(candidates),
        "failures": [f"{r} vs {c}: {m}" for (r, c), m in sorted(scores.failures.items())],
    }


def candidate_mask(study, variant: str, candidate_id: str) -> np.ndarray:
    """The mask the study's scoring averaged a candidate's displacement over (its
    preprocessing foreground), recomputed from the study's cohort and config.

    ``study`` is a :class:`~.index.StudyIndex`. The candidate is preprocessed again onto the
    grid stored in ``preprocessed/<variant>/`` (the foreground does not depend on the
    intensity scaling); raises :class:`~inversion_audit.errors.StudyError` when the cohort
    is not on this machine or the grid differs from the stored one.
    """
    import dataclasses

    from ..data import load_cohort, preprocess_subject
    from ..errors import InversionAuditError, StudyError
    from ..io import read_volume

    stored = read_volume(study.candidate_file(variant, candidate_id))
    try:
        config = study.config()
        cohort = load_cohort(
            study.cohort_path(), config.cohort.image_pattern, config.cohort.labels_pattern
        )
        base = config.preprocess_config(variant)
        cfg = dataclasses.replace(
            base, shape=stored.shape, divisible_by=1, intensity="none", nyul_landmarks=None
        )
        pre = preprocess_subject(cohort[candidate_id], cfg)
    except (InversionAuditError, KeyError) as exc:
        raise StudyError(
            f"{study.root}: cannot recompute the scoring mask of {candidate_id!r} ({exc})"
        ) from exc
    if not np.allclose(pre.affine, stored.affine, atol=1e-3):
        raise StudyError(
            f"{study.candidate_file(variant, candidate_id)}: grid differs from the study's "
            "preprocessing of its cohort"
        )
    return np.asarray(pre.mask, dtype=bool)
