"""The study folder layout, shared by the runner, the reader study and the napari widgets.

Only standard-library imports: the GUI reads studies without importing torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HOLDOUT_FILE", "REPORT_KINDS", "SCORE_COLUMNS", "StudyPaths", "run_name", "parse_run"]

#: the non-member ids of a study with a holdout (and the fold that reconstructs each)
HOLDOUT_FILE = "holdout.json"
#: the report's files, ``report.<kind>``
REPORT_KINDS = ("md", "html", "json", "pdf")

#: columns of the long-format ``scores/scores.csv``
SCORE_COLUMNS = (
    "fold",
    "arch",
    "variant",
    "threat_model",
    "defence",
    "reconstruction_id",
    "candidate_id",
    "metric",
    "value",
)


def run_name(arch: str, variant: str, threat_model: str, defence: str = "") -> str:
    """Folder-safe name of one (architecture, variant, threat model[, defence tag]) run."""
    base = f"{arch}_{variant}_{threat_model.replace('+', '-')}"
    return f"{base}_{defence}" if defence else base


def parse_run(run: str) -> tuple[str, str, str, str]:
    """``"unet_skull-stripped_bottleneck-skips_latent-noise-0.5"`` ->
    ``("unet", "skull-stripped", "bottleneck+skips", "latent-noise-0.5")`` (defence ``""``
    for an undefended run).

    The inverse of :func:`run_name`; raises :class:`~inversion_audit.errors.StudyError` (a
    ``ValueError``) when ``run`` is not ``<arch>_<variant>_<threat_model>[_<tag>]`` of known
    names.
    """
    from ..errors import StudyError
    from .config import ARCHS, THREAT_MODELS, VARIANTS

    parts = run.split("_")
    # a defended run: <arch>_<variant>_<threat>_<defence tag>
    defence = parts.pop() if len(parts) == 4 and _defence_tag(parts[3]) else None
    threat = parts[2].replace("-", "+") if len(parts) == 3 else ""
    if (
        len(parts) != 3
        or parts[0] not in ARCHS
        or parts[1] not in VARIANTS
        or threat not in THREAT_MODELS
    ):
        raise StudyError(f"{run!r} is not a run name <arch>_<variant>_<threat_model>")
    return parts[0], parts[1], threat, defence or ""


def _defence_tag(text: str) -> bool:
    from .defences_config import parse_defence_tag

    try:
        parse_defence_tag(text)
    except ValueError:
        return False
    return True


def _path(root: Path, *parts: str) -> Path:
    from ..io.paths import output_path  # imported here: this module stays standard-library only

    return output_path(root, *parts)


@dataclass(frozen=True)
class StudyPaths:
    """Paths of the study folder layout (``docs/architecture.md``, "Study folder layout"):
    every path in a study folder is one of these methods or properties.

    Every path named by a subject id, run name or variant is built by
    :func:`~inversion_audit.io.paths.output_path`, so one that would leave the study folder
    raises a ``CohortError`` instead.
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    # -- records at the top of the folder -----------------------------------------------------------
    @property
    def config(self) -> Path:
        """``config.toml``: the validated config as run."""
        return self.root / "config.toml"

    @property
    def provenance(self) -> Path:
        """``provenance.json``: versions, seeds, input hashes, device, times."""
        return self.root / "provenance.json"

    @property
    def log(self) -> Path:
        """``study.log``."""
        return self.root / "study.log"

    @property
    def holdout(self) -> Path:
        """``holdout.json``: the non-member ids, with a holdout."""
        return self.root / HOLDOUT_FILE

    @property
    def external_record(self) -> Path:
        """``external_model.json``: the model audited, with ``[model]``."""
        return self.root / "external_model.json"

    @property
    def stages_dir(self) -> Path:
        """``stages/``: the stage records that make a study resumable."""
        return self.root / "stages"

    def report(self, kind: str) -> Path:
        """``report.md``, ``report.html``, ``report.json`` or ``report.pdf`` (``kind`` of :data:`REPORT_KINDS`)."""
        if kind not in REPORT_KINDS:
            raise ValueError(f"report kind must be one of {REPORT_KINDS}, got {kind!r}")
        return self.root / f"report.{kind}"

    @property
    def reader_study_markdown(self) -> Path:
        """``reader_study/reader_study.md``: a reader study's section, added to the report."""
        return self.root / "reader_study" / "reader_study.md"

    @property
    def match_summary(self) -> Path:
        """``summary.json`` of a folder written by ``inversion-audit match``."""
        return self.root / "summary.json"

    # -- checkpoints ----------------------------------------------------------------------------------
    def target(self, arch: str, variant: str, fold: int) -> Path:
        return _path(
            self.root, "checkpoints", f"{arch}_{variant}", f"fold{fold}", "target.safetensors"
        )

    def inversion(self, run: str, fold: int) -> Path:
        return _path(self.root, "checkpoints", run, f"fold{fold}", "inversion.safetensors")

    def reid(self, run: str, fold: int) -> Path:
        """The run's re-identifier, beside its inversion decoder."""
        return _path(self.root, "checkpoints", run, f"fold{fold}", "reid.safetensors")

    def crossfit(self, run: str, fold: int, key: str) -> Path:
        """The re-identifier's cross-fitted training reconstructions (``crossfit-<key>.npz``)."""
        return _path(self.root, "checkpoints", run, f"fold{fold}", f"crossfit-{key}.npz")

    def vae_dir(self, arch: str, variant: str, fold: int) -> Path:
        """Obfuscation's VAE of a fold (``checkpoints/<arch>_<variant>_obfuscation/fold<k>/vae``)."""
        return _path(
            self.root, "checkpoints", f"{arch}_{variant}_obfuscation", f"fold{fold}", "vae"
        )

    # -- images ---------------------------------------------------------------------------------------
    @property
    def preprocessed_root(self) -> Path:
        """``preprocessed/``: one folder per variant."""
        return self.root / "preprocessed"

    def preprocessed_dir(self, variant: str) -> Path:
        return _path(self.root, "preprocessed", variant)

    @property
    def reconstructions_root(self) -> Path:
        """``reconstructions/``: one folder per run."""
        return self.root / "reconstructions"

    def reconstructions_dir(self, run: str) -> Path:
        return _path(self.root, "reconstructions", run)

    def preprocessed(self, variant: str, subject: str) -> Path:
        """A candidate original as compared (preprocessed grid)."""
        return _path(self.root, "preprocessed", variant, f"{subject}.nii.gz")

    def preprocessed_labels(self, variant: str, subject: str) -> Path:
        """The subject's label map on the preprocessed grid (for display)."""
        return _path(self.root, "preprocessed", variant, f"{subject}_seg.nii.gz")

    def reconstruction(self, run: str, subject: str, grid: str = "original") -> Path:
        """``_recon.nii.gz`` on the subject's original grid, ``_recon_pre.nii.gz`` on the preprocessed grid."""
        if grid not in ("original", "preprocessed"):
            raise ValueError(f"grid must be 'original' or 'preprocessed', got {grid!r}")
        suffix = "_recon.nii.gz" if grid == "original" else "_recon_pre.nii.gz"
        return _path(self.root, "reconstructions", run, f"{subject}{suffix}")

    def deformation_dir(self, run: str) -> Path:
        return _path(self.root, "deformation", run)

    def deformation(self, run: str, subject: str, candidate: str) -> Path:
        return _path(self.root, "deformation", run, f"{subject}__{candidate}_magnitude.nii.gz")

    # -- tables ---------------------------------------------------------------------------------------
    @property
    def score_parts_dir(self) -> Path:
        """``scores/parts/``: one score table per run and fold."""
        return self.root / "scores" / "parts"

    def score_part(self, run: str, fold: int | None) -> Path:
        """``scores/parts/<run>_fold<k>.csv``; ``<run>.csv`` for scores made outside a study's
        folds (``fold`` ``None``: ``inversion-audit match``)."""
        name = f"{run}.csv" if fold is None else f"{run}_fold{fold}.csv"
        return _path(self.root, "scores", "parts", name)

    @property
    def scores(self) -> Path:
        """``scores/scores.csv``: every score of the study, long format (:data:`SCORE_COLUMNS`)."""
        return self.root / "scores" / "scores.csv"

    def rankings(self, run: str) -> Path:
        return _path(self.root, "rankings", f"{run}.csv")

    @property
    def utility_dir(self) -> Path:
        """``utility/``: the released targets' Dice, with ``[[defences]]``."""
        return self.root / "utility"

    def utility(self, arch: str, variant: str, fold: int, defence: str = "") -> Path:
        """``utility/<arch>_<variant>[_<tag>]_fold<k>.json``: a released target's Dice
        (``defence``: its setting's tag, ``""`` for the undefended target)."""
        name = f"{arch}_{variant}" + (f"_{defence}" if defence else "")
        return _path(self.root, "utility", f"{name}_fold{fold}.json")

    @property
    def record_losses_dir(self) -> Path:
        """``record_losses/``: each protocol target's per-subject signals, with a holdout."""
        return self.root / "record_losses"

    def record_losses(self, arch: str, variant: str, fold: int) -> Path:
        """``record_losses/<arch>_<variant>_fold<k>.json``: a fold target's likelihood of every
        subject's labels (members, other folds' subjects and the holdout), for membership
        inference with the other folds' targets as reference models."""
        return _path(self.root, "record_losses", f"{arch}_{variant}_fold{fold}.json")
