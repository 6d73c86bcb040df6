"""Read what a reader study needs from a study folder: scores, reconstructions, candidates.

Everything is read through :class:`~inversion_audit.study.index.StudyIndex` (the one reader
of the runner's layout). A reconstruction id is the id of the private subject it
reconstructs, so its true match is the candidate with the same id.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StudyError
from ..study.index import SCORE_COLUMNS, StudyIndex
from ..study.layout import run_name

__all__ = [
    "SCORE_COLUMNS",
    "ReconstructionScores",
    "RunScores",
    "run_name",
    "read_study_scores",
    "reconstruction_file",
    "candidate_file",
]


@dataclass
class ReconstructionScores:
    """The candidates scored against one reconstruction, with their SSIM when known."""

    reconstruction_id: str
    fold: int | None
    candidates: set[str] = field(default_factory=set)
    ssim: dict[str, float] = field(default_factory=dict)


@dataclass
class RunScores:
    """All reconstructions of one run (architecture, variant, threat model)."""

    run: str
    variant: str
    reconstructions: dict[str, ReconstructionScores] = field(default_factory=dict)

    def ssim_top1_accuracy(self) -> float:
        """Fraction of reconstructions whose highest-SSIM candidate is the true original."""
        hits = [
            max(r.ssim, key=lambda c: (r.ssim[c], c)) == r.reconstruction_id
            for r in self.reconstructions.values()
            if r.ssim
        ]
        return sum(hits) / len(hits) if hits else 0.0


def read_study_scores(study_dir: str | os.PathLike[str]) -> dict[str, RunScores]:
    """``STUDY/scores/scores.csv`` grouped by run and reconstruction (finite SSIMs kept).

    Raises :class:`StudyError` naming the file when it is missing, malformed or empty.
    """
    study = StudyIndex(study_dir)
    runs: dict[str, RunScores] = {}
    for row in study.score_table():
        run = run_name(row["arch"], row["variant"], row["threat_model"], row["defence"])
        rs = runs.setdefault(run, RunScores(run, row["variant"]))
        rid, cid = row["reconstruction_id"], row["candidate_id"]
        rec = rs.reconstructions.setdefault(rid, ReconstructionScores(rid, row["fold"]))
        rec.candidates.add(cid)
        if row["metric"] == "ssim" and math.isfinite(row["value"]):
            rec.ssim[cid] = row["value"]
    if not runs:
        raise StudyError(f"{study.paths.scores}: no scores")
    return runs


def reconstruction_file(
    study_dir: str | os.PathLike[str], run: str, reconstruction_id: str
) -> Path:
    """``STUDY/reconstructions/<run>/<id>_recon_pre.nii.gz`` (preprocessed grid)."""
    return StudyIndex(study_dir).paths.reconstruction(run, reconstruction_id, "preprocessed")


def candidate_file(study_dir: str | os.PathLike[str], variant: str, candidate_id: str) -> Path:
    """``STUDY/preprocessed/<variant>/<id>.nii.gz`` (what reconstructions are compared with)."""
    return StudyIndex(study_dir).candidate_file(variant, candidate_id)
