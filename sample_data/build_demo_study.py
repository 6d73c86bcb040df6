"""Bundle a finished demo study as ``sample_data/demo_study`` (the napari "demo study" sample).

    inversion-audit run configs/demo.toml --out /tmp/demo-study
    python sample_data/build_demo_study.py /tmp/demo-study

Copies what the widgets and ``reader-study create`` read (scores, rankings, report, the
non-member holdout record ``holdout.json`` that Open study's member / non-member marks come
from, preprocessed candidates and labels, reconstructions on the preprocessed grid,
deformation maps) and the fold-0 checkpoints; leaves out stage records, logs, the
reconstructions written back to the original grids and the other folds' checkpoints, to keep
the package small (a few MB). ``provenance.json`` records the cohort as the config names it
(``sample``) instead of the build machine's folder, so each installation resolves it to its
own cached copy (or finds none) as the runner would. Deformation magnitude maps are stored
as scaled int16 (a step of max/32767 mm, under 0.001 mm here), which halves them.
"""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np

KEEP = ("config.toml", "provenance.json", "report.html", "report.md", "report.json")
#: kept when the study has it (``holdout.json``: a study with a non-member holdout)
OPTIONAL = ("holdout.json",)
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
    for name in OPTIONAL:
        if (study / name).is_file():
            shutil.copy2(study / name, tmp / name)
    _portable_inputs(tmp / "provenance.json", tmp / "config.toml")
    for tree in TREES:
        shutil.copytree(
            study / tree, tmp / tree, ignore=shutil.ignore_patterns("parts", "*_recon.nii.gz")
        )
    for path in (tmp / "deformation").rglob("*.nii.gz"):
        _as_scaled_int16(path)
    for fold0 in (study / "checkpoints").glob("*/fold0"):
        shutil.copytree(fold0, tmp / "checkpoints" / fold0.parent.name / "fold0")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _portable_inputs(provenance: Path, config: Path) -> None:
    """Replace the recorded cohort folders of ``provenance`` by the config's ``cohort.path`` /
    ``cohort.attack_path`` (file hashes kept): the build machine's folders mean nothing, or
    something else, on another machine."""
    from inversion_audit.io import atomic_write_json

    cohort = tomllib.loads(config.read_text())["cohort"]
    data = json.loads(provenance.read_text())
    inputs = data.get("inputs", {})
    for key, config_key in (("cohort", "path"), ("attack_cohort", "attack_path")):
        if key in inputs and config_key in cohort:
            inputs[key] = cohort[config_key]
    atomic_write_json(provenance, data)


def _as_scaled_int16(path: Path) -> None:
    """Rewrite a float NIfTI as int16 with a slope (nibabel picks it from the data range)."""
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    out = nib.Nifti1Image(data, img.affine, img.header)
    out.set_data_dtype(np.int16)
    nib.save(out, path)


if __name__ == "__main__":
    target = build(Path(sys.argv[1]), Path(__file__).resolve().parent / "demo_study")
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {size / 1e6:.1f} MB")
