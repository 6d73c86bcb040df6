"""The one reader of a study folder: runs, reconstructions, candidates, scores, rankings,
deformation maps, checkpoints, the config, the holdout and the other records, and the
cohort's location.

Built on :class:`~.layout.StudyPaths` (the runner's layout, ``docs/architecture.md``) and
:func:`~.layout.parse_run`. Qt-free and torch-free, so the napari widgets, the report
and the reader study all read studies through it. A reconstruction id is the id of the
private subject it reconstructs, so its true original is the candidate with the same id.
Every problem raises :class:`~inversion_audit.errors.StudyError` naming the folder or file.
The score and ranking tables are parsed by :mod:`.score_files`, the JSON records by
:mod:`.records`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import StudyError
from .layout import SCORE_COLUMNS, StudyPaths, parse_run, run_name
from .records import (
    read_external_record,
    read_holdout_ids,
    read_reader_study_section,
    read_utility_records,
)
from .score_files import Ranking, ScoreRow, read_rankings, read_scores

__all__ = [
    "SCORE_COLUMNS",
    "ReconstructionEntry",
    "CandidateScore",
    "StudyIndex",
    "entry_defence",
    "read_holdout_ids",
]

_RECON_PRE = "_recon_pre.nii.gz"


@dataclass(frozen=True)
class ReconstructionEntry:
    """One reconstruction of a study: a private subject reconstructed by one run."""

    reconstruction_id: str
    arch: str
    variant: str
    threat_model: str
    fold: int | None = None
    #: the run's defence setting tag (``latent-noise-0.5``), ``""`` when undefended
    defence: str = ""

    @property
    def run(self) -> str:
        return run_name(self.arch, self.variant, self.threat_model, self.defence)

    @property
    def label(self) -> str:
        fold = "?" if self.fold is None else str(self.fold)
        defence = f"_{self.defence}" if self.defence else ""  # as before the defence column
        return (
            f"{self.reconstruction_id} · fold {fold} · {self.arch} · {self.variant} · "
            f"{self.threat_model}{defence}"
        )


def entry_defence(entry: ReconstructionEntry) -> tuple[str, float] | None:
    """A defended run's defence ``(kind, strength)`` (from its tag), ``None`` for an
    undefended run. An obfuscation run's kind says whether the attacker knew the domain
    (``obfuscation-known``)."""
    if not entry.defence:
        return None
    from .defences_config import parse_defence_tag

    kind, strength, _, known = parse_defence_tag(entry.defence)
    if known is not None:
        kind = f"{kind}-{'known' if known else 'unknown'}"
    return kind, strength


@dataclass(frozen=True)
class CandidateScore:
    """The scores of one candidate original against one reconstruction (NaN when not computed)."""

    candidate_id: str
    ssim: float = math.nan
    correlation: float = math.nan
    psnr: float = math.nan
    deformation: float = math.nan
    #: every metric of ``scores.csv`` for the pair (e.g. ``reid``, ``ssim_brain``)
    metrics: dict[str, float] = field(default_factory=dict, compare=False, hash=False)

    def value(self, metric: str) -> float:
        """The pair's score under ``metric``; NaN when not computed."""
        return self.metrics.get(metric, getattr(self, metric, math.nan))


class StudyIndex:
    """An opened study folder (see :meth:`open`).

    ``entries`` lists the reconstructions (from ``scores.csv``, or from the reconstruction
    files of a study not scored yet); ``scores`` maps ``(run, reconstruction_id)`` to
    ``{candidate_id: {metric: value}}``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.paths = StudyPaths(root)

    @property
    def root(self) -> Path:
        return self.paths.root

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> StudyIndex:
        """Open ``root``; raises :class:`StudyError` when it is not a study folder."""
        index = cls(root)
        if not index.root.is_dir():
            raise StudyError(f"{index.root}: study folder not found")
        if not index.entries:
            raise StudyError(
                f"{index.root}: not a study folder (no scores/scores.csv and no "
                f"reconstructions/<run>/*{_RECON_PRE})"
            )
        return index

    # -- scores -----------------------------------------------------------------------------------
    @cached_property
    def score_rows(self) -> list[ScoreRow]:
        """The rows of ``scores/scores.csv`` (empty when the study has none yet)."""
        return read_scores(self.paths.scores) if self.paths.scores.is_file() else []

    def score_table(self) -> list[ScoreRow]:
        """The rows of ``scores/scores.csv``; raises :class:`StudyError` naming the file when
        the study has none (not scored yet)."""
        if not self.paths.scores.is_file():
            read_scores(self.paths.scores)  # raises, naming the file
        return self.score_rows

    @cached_property
    def scores(self) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
        out: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
        for r in self.score_rows:
            run = run_name(r["arch"], r["variant"], r["threat_model"], r["defence"])
            key = (run, r["reconstruction_id"])
            out.setdefault(key, {}).setdefault(r["candidate_id"], {})[r["metric"]] = r["value"]
        return out

    @cached_property
    def entries(self) -> list[ReconstructionEntry]:
        """Every reconstruction, in (reconstruction id, run) order."""
        found: dict[tuple[str, str], ReconstructionEntry] = {}
        if self.score_rows:
            for r in self.score_rows:
                e = ReconstructionEntry(
                    r["reconstruction_id"],
                    r["arch"],
                    r["variant"],
                    r["threat_model"],
                    r["fold"],
                    r["defence"],
                )
                found.setdefault((e.run, e.reconstruction_id), e)
        else:
            for run in self.reconstruction_runs():
                arch, variant, threat, defence = parse_run(run)
                for rid in self.reconstruction_ids(run):
                    found[(run, rid)] = ReconstructionEntry(
                        rid, arch, variant, threat, None, defence
                    )
        return sorted(found.values(), key=lambda e: (e.reconstruction_id, e.run))

    def runs(self) -> list[str]:
        """Every run with scores or reconstructions, sorted."""
        return sorted({e.run for e in self.entries} | set(self.reconstruction_runs()))

    def search(self, text: str) -> list[ReconstructionEntry]:
        """Entries whose label contains every whitespace-separated word of ``text`` (any case)."""
        words = text.lower().split()
        return [e for e in self.entries if all(w in e.label.lower() for w in words)]

    def entry(self, run: str, reconstruction_id: str) -> ReconstructionEntry:
        for e in self.entries:
            if e.run == run and e.reconstruction_id == reconstruction_id:
                return e
        raise StudyError(f"{self.root}: no reconstruction {reconstruction_id!r} in run {run!r}")

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
                metrics=dict(m),
            )
            for cid, m in sorted(table.items())
        ]

    def metrics(self) -> list[str]:
        """The metrics ``scores.csv`` holds, sorted."""
        return sorted({r["metric"] for r in self.score_rows})

    @cached_property
    def holdout_ids(self) -> frozenset[str]:
        """The non-members (``holdout.json``): subjects that trained neither the target nor the
        decoder; empty for a study without a holdout."""
        return frozenset(read_holdout_ids(self.root))

    def is_member(self, entry: ReconstructionEntry) -> bool:
        """Whether the reconstructed subject trained the target (not in the holdout)."""
        return entry.reconstruction_id not in self.holdout_ids

    def score(self, run: str, reconstruction_id: str, candidate_id: str, metric: str) -> float:
        """One score from ``scores.csv``; NaN when absent."""
        return (
            self.scores.get((run, reconstruction_id), {})
            .get(candidate_id, {})
            .get(metric, math.nan)
        )

    def rankings(self, run: str) -> list[Ranking]:
        """``rankings/<run>.csv`` (written by the runner once the runs are scored)."""
        return read_rankings(self.paths.rankings(run))

    # -- files ------------------------------------------------------------------------------------
    def reconstruction_runs(self) -> list[str]:
        """Runs with a ``reconstructions/<run>/`` folder (folders not named like a run are ignored)."""
        out = []
        for d in sorted(self.paths.reconstructions_root.glob("*")):
            try:
                parse_run(d.name)
            except ValueError:
                continue
            if d.is_dir():
                out.append(d.name)
        return out

    def reconstruction_ids(self, run: str) -> list[str]:
        """Subjects with a preprocessed-grid reconstruction in ``run``, sorted."""
        folder = self.paths.reconstructions_dir(run)
        return sorted(f.name[: -len(_RECON_PRE)] for f in folder.glob(f"*{_RECON_PRE}"))

    def reconstruction_file(self, entry: ReconstructionEntry, grid: str = "preprocessed") -> Path:
        """``reconstructions/<run>/<id>_recon_pre.nii.gz`` (``_recon.nii.gz`` for ``grid="original"``)."""
        return self.paths.reconstruction(entry.run, entry.reconstruction_id, grid)

    def variants(self) -> list[str]:
        """Variants with a ``preprocessed/<variant>/`` folder."""
        return sorted(d.name for d in self.paths.preprocessed_root.glob("*") if d.is_dir())

    def candidate_ids(self, variant: str) -> list[str]:
        """The candidate originals of ``preprocessed/<variant>/`` (label maps excluded), sorted."""
        folder = self.paths.preprocessed_dir(variant)
        names = (f.name[: -len(".nii.gz")] for f in folder.glob("*.nii.gz"))
        return sorted(n for n in names if not n.endswith("_seg"))

    def candidate_file(self, variant: str, candidate_id: str) -> Path:
        """``preprocessed/<variant>/<id>.nii.gz``: a candidate original as compared."""
        return self.paths.preprocessed(variant, candidate_id)

    def deformation_file(self, run: str, reconstruction_id: str, candidate_id: str) -> Path:
        """``deformation/<run>/<id>__<candidate>_magnitude.nii.gz`` (may not exist)."""
        return self.paths.deformation(run, reconstruction_id, candidate_id)

    def checkpoint_files(
        self, entry: ReconstructionEntry, existing: bool = False
    ) -> tuple[Path, Path] | None:
        """Target and inversion checkpoints of the entry's fold, or ``None`` when the fold is
        unknown (``existing``: also when either file is not in the study)."""
        if entry.fold is None:
            return None
        files = (
            self.paths.target(entry.arch, entry.variant, entry.fold),
            self.paths.inversion(entry.run, entry.fold),
        )
        return None if existing and not all(f.is_file() for f in files) else files

    # -- volumes ----------------------------------------------------------------------------------
    def read_candidate(self, variant: str, candidate_id: str):
        """The candidate original as compared (a :class:`~inversion_audit.io.Volume`), ``None``
        when the study does not hold it; a damaged file raises ``VolumeError`` naming it."""
        return _read_volume(self.paths.preprocessed(variant, candidate_id))

    def read_reconstruction(self, run: str, reconstruction_id: str, grid: str = "preprocessed"):
        """A reconstruction (``grid`` as in :meth:`reconstruction_file`), ``None`` when absent."""
        return _read_volume(self.paths.reconstruction(run, reconstruction_id, grid))

    def read_deformation(self, run: str, reconstruction_id: str, candidate_id: str):
        """A pair's deformation magnitude map stored by scoring, ``None`` when absent."""
        return _read_volume(self.paths.deformation(run, reconstruction_id, candidate_id))

    def labels_file(self, variant: str, subject_id: str) -> Path | None:
        """The subject's label map: ``preprocessed/<variant>/<id>_seg.nii.gz`` if the study holds one,
        else the cohort's labels file when that cohort is on this machine."""
        local = self.paths.preprocessed_labels(variant, subject_id)
        if local.is_file():
            return local
        cohort = self._cohort
        if cohort is None or subject_id not in cohort.ids:
            return None
        labels = cohort[subject_id].labels
        return labels if labels is not None and labels.is_file() else None

    # -- records ----------------------------------------------------------------------------------
    def external_record(self) -> dict | None:
        """``external_model.json``: the model audited per variant (``None`` without ``[model]``)."""
        return read_external_record(self.paths)

    def utility_records(self) -> list[dict]:
        """The released targets' ``utility/*.json`` records (damaged ones left out)."""
        return read_utility_records(self.paths)

    def record_losses(self) -> list[dict]:
        """Each undefended fold target's per-subject signals (``record_losses/*.json``, damaged
        ones left out; :func:`~.record_losses.read_record_losses`)."""
        from .record_losses import read_record_losses

        return read_record_losses(self.paths)

    def decoder_records(self) -> list[dict]:
        """Each inversion decoder's sidecar, per run and fold (``[{"run", "fold", "metadata"}]``;
        :func:`~.decoder_records.read_decoder_records`)."""
        from .decoder_records import read_decoder_records

        return read_decoder_records(
            self.paths, {(e.run, e.fold) for e in self.entries if e.fold is not None}
        )

    def reader_study_section(self) -> list[str]:
        """The Markdown lines of a reader study's section (empty without one)."""
        return read_reader_study_section(self.paths)

    def provenance(self) -> dict | None:
        """``provenance.json`` (``None`` when missing or unreadable)."""
        from .provenance import read_provenance

        return read_provenance(self.paths.provenance)

    # -- configuration and cohort -------------------------------------------------------------------
    def config(self):
        """The study's ``config.toml`` as a :class:`~.config.StudyConfig`."""
        from .config import load_study_config

        path = self.paths.config
        if not path.is_file():
            raise StudyError(f"{path}: study config not found")
        return load_study_config(path)

    def cohort_path(self, generate: bool = False, attack: bool = False) -> Path:
        """Where the study's cohort (``attack``: its separate attack cohort) is on this machine.

        The folder the runner recorded in ``provenance.json`` when it is still there, else the
        config's ``cohort.path`` resolved as the runner resolves it
        (:func:`~.inputs.cohort_location`; ``"sample"`` is the cached sample cohort, generated
        only with ``generate``). Raises :class:`StudyError` when it is not on this machine.
        """
        from ..sample_data import SAMPLE_KEYWORD
        from .inputs import cohort_location

        inputs = (self.provenance() or {}).get("inputs", {})
        recorded = inputs.get("attack_cohort" if attack else "cohort")
        if recorded and Path(recorded).exists():
            return Path(recorded)
        cfg = self.config()
        path = cfg.cohort.attack_path if attack else cfg.cohort.path
        if not path:
            raise StudyError(f"{self.root}: the study has no separate attack cohort")
        found = cohort_location(path, cfg, generate=generate)
        if path == SAMPLE_KEYWORD and not generate:  # the sample cohort is whole once marked
            from ..sample_data.synthetic import MARKER

            found = found if (found / MARKER).is_file() else Path(path)
        if not found.exists():
            raise StudyError(f"{self.root}: its cohort ({recorded or path}) is not on this machine")
        return found

    @cached_property
    def _cohort(self):
        """The study's cohort when it is on this machine (nothing generated), else ``None``."""
        from ..data import load_cohort
        from ..errors import InversionAuditError

        try:
            cfg = self.config()
            return load_cohort(
                self.cohort_path(), cfg.cohort.image_pattern, cfg.cohort.labels_pattern
            )
        except InversionAuditError:  # a missing cohort only costs the labels layer
            return None


def _read_volume(path: Path):
    """The volume at ``path``, ``None`` when there is no such file."""
    from ..io import read_volume

    return read_volume(path) if path.is_file() else None
