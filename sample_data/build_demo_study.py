"""Bundle a finished demo study as ``sample_data/demo_study`` (the napari "demo study" sample).

    inversion-audit run configs/demo.toml --out /tmp/demo-study
    python sample_data/build_demo_study.py /tmp/demo-study

Copies what the widgets and ``reader-study create`` read (scores, rankings, report,
preprocessed candidates and labels, reconstructions on the preprocessed grid, deformation
maps) and the fold-0 checkpoints; leaves out stage records, logs, the reconstructions
written back to the original grids and the other folds' checkpoints, to keep the package
small (a few MB).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

KEEP = ("config.toml", "provenance.json", "report.html", "report.md", "report.json")
TREES = ("scores", "rankings", "preprocessed", "reconstructions", "deformation")


def build(study: Path, out: Path) -> Path:
    """Copy the bundle from ``study`` to ``out`` (replaced)."""
    if not (study / "scores" / "scores.csv").is_file():
        raise SystemExit(f"{study}: not a finished study (no scores/scores.csv)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in KEEP:
        shutil.copy2(study / name, tmp / name)
    for tree in TREES:
        shutil.copytree(
            study / tree, tmp / tree, ignore=shutil.ignore_patterns("parts", "*_recon.nii.gz")
        )
    for fold0 in (study / "checkpoints").glob("*/fold0"):
        shutil.copytree(fold0, tmp / "checkpoints" / fold0.parent.name / "fold0")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


if __name__ == "__main__":
    target = build(Path(sys.argv[1]), Path(__file__).resolve().parent / "demo_study")
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {size / 1e6:.1f} MB")
