"""The study folder layout, shared by the runner, the reader study and the napari widgets.

Only standard-library imports: the GUI reads studies without importing torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SCORE_COLUMNS", "StudyPaths", "run_name", "parse_run", "parse_run_name"]

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


def parse_run_name(run: str) -> tuple[str, str, str]:
    """``(arch, variant, threat)`` of a run name, a defended run's threat as the ``threat_model``
    column of studies before the ``defence`` column read (``bottleneck_latent-noise-0.5``).

    For readers not yet on :func:`parse_run`, which keeps the defence apart.
    """
    arch, variant, threat, defence = parse_run(run)
    return arch, variant, f"{threat}_{defence}" if defence else threat


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
    """Paths of the study folder layout (``docs/architecture.md``, "Study folder layout").

    Every path is built by :func:`~inversion_audit.io.paths.output_path`, so a subject id
    or run name that would leave the study folder raises a ``CohortError`` instead.
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    def target(self, arch: str, variant: str, fold: int) -> Path:
        return _path(
            self.root, "checkpoints", f"{arch}_{variant}", f"fold{fold}", "target.safetensors"
        )

    def inversion(self, run: str, fold: int) -> Path:
        return _path(self.root, "checkpoints", run, f"fold{fold}", "inversion.safetensors")

    def preprocessed_dir(self, variant: str) -> Path:
        return _path(self.root, "preprocessed", variant)

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

    def score_part(self, run: str, fold: int) -> Path:
        return _path(self.root, "scores", "parts", f"{run}_fold{fold}.csv")

    def deformation_dir(self, run: str) -> Path:
        return _path(self.root, "deformation", run)

    def deformation(self, run: str, subject: str, candidate: str) -> Path:
        return _path(self.root, "deformation", run, f"{subject}__{candidate}_magnitude.nii.gz")

    def rankings(self, run: str) -> Path:
        return _path(self.root, "rankings", f"{run}.csv")

    @property
    def scores(self) -> Path:
        return self.root / "scores" / "scores.csv"
