"""Read what a reader study needs from a study folder: scores, reconstructions, candidates.

The layout is the study runner's (``docs/architecture.md``): ``scores/scores.csv`` in long
format, ``reconstructions/<run>/<subject>_recon_pre.nii.gz`` and
``preprocessed/<variant>/<subject>.nii.gz``. A reconstruction id is the id of the private
subject it reconstructs, so its true match is the candidate with the same id.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CohortError
from ..study.layout import SCORE_COLUMNS, StudyPaths, run_name

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


def _parse_fold(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(float(text))
    except ValueError:
        return None


def read_study_scores(study_dir: str | os.PathLike[str]) -> dict[str, RunScores]:
    """Read ``STUDY/scores/scores.csv`` grouped by run and reconstruction.

    Raises :class:`CohortError` naming the file when it is missing or lacks a column.
    """
    path = Path(study_dir) / "scores" / "scores.csv"
    if not path.is_file():
        raise CohortError(f"{path}: scores table not found (is {study_dir} a finished study?)")
    runs: dict[str, RunScores] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in SCORE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CohortError(f"{path}: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            run = run_name(row["arch"], row["variant"], row["threat_model"])
            rs = runs.setdefault(run, RunScores(run, row["variant"]))
            rid, cid = row["reconstruction_id"], row["candidate_id"]
            if not rid or not cid:
                raise CohortError(f"{path}:{line}: empty reconstruction_id or candidate_id")
            rec = rs.reconstructions.setdefault(
                rid, ReconstructionScores(rid, _parse_fold(row["fold"]))
            )
            rec.candidates.add(cid)
            if row["metric"].strip().lower() == "ssim":
                try:
                    value = float(row["value"])
                except ValueError as exc:
                    raise CohortError(
                        f"{path}:{line}: SSIM value {row['value']!r} is not a number"
                    ) from exc
                if math.isfinite(value):
                    rec.ssim[cid] = value
    if not runs:
        raise CohortError(f"{path}: no scores")
    return runs


def reconstruction_file(
    study_dir: str | os.PathLike[str], run: str, reconstruction_id: str
) -> Path:
    """``STUDY/reconstructions/<run>/<id>_recon_pre.nii.gz`` (preprocessed grid)."""
    return StudyPaths(study_dir).reconstruction(run, reconstruction_id, "preprocessed")


def candidate_file(study_dir: str | os.PathLike[str], variant: str, candidate_id: str) -> Path:
    """``STUDY/preprocessed/<variant>/<id>.nii.gz`` (what reconstructions are compared with)."""
    return StudyPaths(study_dir).preprocessed(variant, candidate_id)
