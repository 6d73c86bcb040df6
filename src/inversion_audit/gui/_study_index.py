"""A study folder as the widgets see it: reconstructions, candidate scores and file paths.

Qt-free and torch-free, so it is tested without a viewer. The layout is the study runner's
(``docs/architecture.md``). A reconstruction id is the id of the private subject it
reconstructs, so its true original is the candidate with the same id.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import CohortError
from ..study.config import ARCHS, VARIANTS, run_name

__all__ = [
    "SCORE_COLUMNS",
    "CandidateScore",
    "ReconstructionEntry",
    "StudyIndex",
    "parse_run_name",
]

SCORE_COLUMNS = (
    "fold",
    "arch",
    "variant",
    "threat_model",
    "reconstruction_id",
    "candidate_id",
    "metric",
    "value",
)
_RECON_PRE = "_recon_pre.nii.gz"


def parse_run_name(run: str) -> tuple[str, str, str]:
    """``"unet_skull-stripped_bottleneck-skips"`` -> ``("unet", "skull-stripped", "bottleneck+skips")``."""
    parts = run.split("_")
    if len(parts) != 3 or parts[0] not in ARCHS or parts[1] not in VARIANTS:
        raise CohortError(f"{run!r} is not a run name <arch>_<variant>_<threat_model>")
    threat = "bottleneck+skips" if parts[2] == "bottleneck-skips" else parts[2]
    return parts[0], parts[1], threat


@dataclass(frozen=True)
class ReconstructionEntry:
    """One reconstruction of a study: a private subject reconstructed by one run."""

    reconstruction_id: str
    arch: str
    variant: str
    threat_model: str
    fold: int | None = None

    @property
    def run(self) -> str:
        return run_name(self.arch, self.variant, self.threat_model)

    @property
    def label(self) -> str:
        fold = "?" if self.fold is None else str(self.fold)
        return f"{self.reconstruction_id} · fold {fold} · {self.arch} · {self.variant} · {self.threat_model}"


@dataclass(frozen=True)
class CandidateScore:
    """The scores of one candidate original against one reconstruction (NaN when not computed)."""

    candidate_id: str
    ssim: float = math.nan
    correlation: float = math.nan
    psnr: float = math.nan
    deformation: float = math.nan


@dataclass(eq=False)
class StudyIndex:
    """An opened study folder.

    Use :meth:`open`; ``entries`` lists the reconstructions and ``scores`` maps
    ``(run, reconstruction_id)`` to ``{candidate_id: {metric: value}}``.
    """

    root: Path
    entries: list[ReconstructionEntry]
    scores: dict[tuple[str, str], dict[str, dict[str, float]]] = field(default_factory=dict)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> StudyIndex:
        """Read ``root/scores/scores.csv`` (or, without it, the reconstruction files).

        Raises :class:`CohortError` naming the folder or file when it is not a study.
        """
        root = Path(root)
        if not root.is_dir():
            raise CohortError(f"{root}: study folder not found")
        scores_csv = root / "scores" / "scores.csv"
        if scores_csv.is_file():
            entries, scores = _read_scores(scores_csv)
        else:
            entries, scores = _entries_from_files(root), {}
        if not entries:
            raise CohortError(
                f"{root}: not a study folder (no scores/scores.csv and no reconstructions/<run>/*{_RECON_PRE})"
            )
        return cls(root, entries, scores)

    # -- queries --------------------------------------------------------------------------------
    def search(self, text: str) -> list[ReconstructionEntry]:
        """Entries whose label contains every whitespace-separated word of ``text`` (any case)."""
        words = text.lower().split()
        return [e for e in self.entries if all(w in e.label.lower() for w in words)]

    def entry(self, run: str, reconstruction_id: str) -> ReconstructionEntry:
        for e in self.entries:
            if e.run == run and e.reconstruction_id == reconstruction_id:
                return e
        raise CohortError(f"{self.root}: no reconstruction {reconstruction_id!r} in run {run!r}")

    def candidates(self, run: str, reconstruction_id: str) -> list[CandidateScore]:
        """Every candidate scored against a reconstruction, in candidate-id order."""
        table = self.scores.get((run, reconstruction_id), {})
        return [
            CandidateScore(
                cid,
                ssim=m.get("ssim", math.nan),
                correlation=m.get("correlation", math.nan),
                psnr=m.get("psnr", math.nan),
                deformation=m.get("deformation", math.nan),
            )
            for cid, m in sorted(table.items())
        ]

    def score(self, run: str, reconstruction_id: str, candidate_id: str, metric: str) -> float:
        """One score from ``scores.csv``; NaN when absent."""
        return (
            self.scores.get((run, reconstruction_id), {})
            .get(candidate_id, {})
            .get(metric, math.nan)
        )

    # -- files ----------------------------------------------------------------------------------
    def reconstruction_file(self, entry: ReconstructionEntry, grid: str = "preprocessed") -> Path:
        """``reconstructions/<run>/<id>_recon_pre.nii.gz`` (or ``_recon.nii.gz`` for ``grid="original"``)."""
        suffix = _RECON_PRE if grid == "preprocessed" else "_recon.nii.gz"
        return self.root / "reconstructions" / entry.run / f"{entry.reconstruction_id}{suffix}"

    def candidate_file(self, variant: str, candidate_id: str) -> Path:
        """``preprocessed/<variant>/<id>.nii.gz``: a candidate original as compared."""
        return self.root / "preprocessed" / variant / f"{candidate_id}.nii.gz"

    def deformation_file(self, run: str, reconstruction_id: str, candidate_id: str) -> Path:
        """``deformation/<run>/<id>__<candidate>_magnitude.nii.gz`` (may not exist)."""
        return (
            self.root
            / "deformation"
            / run
            / f"{reconstruction_id}__{candidate_id}_magnitude.nii.gz"
        )

    def checkpoint_files(self, entry: ReconstructionEntry) -> tuple[Path, Path] | None:
        """Target and inversion checkpoints of the entry's fold, or ``None`` when the fold is unknown."""
        if entry.fold is None:
            return None
        ck = self.root / "checkpoints"
        target = ck / f"{entry.arch}_{entry.variant}" / f"fold{entry.fold}" / "target.safetensors"
        return target, ck / entry.run / f"fold{entry.fold}" / "inversion.safetensors"

    def labels_file(self, variant: str, subject_id: str) -> Path | None:
        """The subject's label map: ``preprocessed/<variant>/<id>_seg.nii.gz`` if the study holds one,
        else the cohort's labels file named in ``config.toml`` when that cohort is on this machine."""
        local = self.root / "preprocessed" / variant / f"{subject_id}_seg.nii.gz"
        if local.is_file():
            return local
        cohort = self._cohort
        if cohort is None:
            return None
        try:
            labels = cohort[subject_id].labels
        except CohortError:
            return None
        return labels if labels is not None and labels.is_file() else None

    @cached_property
    def _cohort(self):
        """The study's cohort when it can be found without generating anything, else ``None``."""
        from ..data import load_cohort
        from ..study.config import load_study_config

        cfg_path = self.root / "config.toml"
        if not cfg_path.is_file():
            return None
        try:
            cfg = load_study_config(cfg_path)
        except Exception:  # an unreadable config only costs the labels layer
            return None
        if cfg.cohort.path == "sample":
            from ..sample_data import sample_cohort_dir
            from ..sample_data.synthetic import MARKER

            folder = sample_cohort_dir(cfg.cohort.sample_n, cfg.cohort.sample_seed)
            if not (folder / MARKER).is_file():
                return None
        else:
            folder = Path(cfg.cohort.path)
            if not folder.is_absolute():
                folder = next(
                    (p for p in (self.root.parent / folder, folder) if p.exists()), folder
                )
        if not folder.exists():
            return None
        try:
            return load_cohort(folder, cfg.cohort.image_pattern, cfg.cohort.labels_pattern)
        except Exception:
            return None


def _read_scores(path: Path):
    entries: dict[tuple[str, str], ReconstructionEntry] = {}
    scores: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in SCORE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CohortError(f"{path}: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            rid, cid = row["reconstruction_id"], row["candidate_id"]
            if not rid or not cid:
                raise CohortError(f"{path}:{line}: empty reconstruction_id or candidate_id")
            try:
                value = float(row["value"])
                fold = int(float(row["fold"])) if row["fold"].strip() else None
            except ValueError as exc:
                raise CohortError(f"{path}:{line}: {exc}") from exc
            entry = ReconstructionEntry(rid, row["arch"], row["variant"], row["threat_model"], fold)
            key = (entry.run, rid)
            entries.setdefault(key, entry)
            scores.setdefault(key, {}).setdefault(cid, {})[row["metric"].strip().lower()] = value
    ordered = sorted(entries.values(), key=lambda e: (e.reconstruction_id, e.run))
    return ordered, scores


def _entries_from_files(root: Path) -> list[ReconstructionEntry]:
    out = []
    for run_dir in sorted((root / "reconstructions").glob("*")):
        try:
            arch, variant, threat = parse_run_name(run_dir.name)
        except CohortError:
            continue
        for f in sorted(run_dir.glob(f"*{_RECON_PRE}")):
            out.append(ReconstructionEntry(f.name[: -len(_RECON_PRE)], arch, variant, threat))
    return sorted(out, key=lambda e: (e.reconstruction_id, e.run))
