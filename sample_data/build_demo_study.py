"""Bundle a finished demo study as ``sample_data/demo_study`` (the napari "demo study" sample).

    .venv/bin/python sample_data/build_demo_study.py STUDY [OUT]   # OUT: sample_data/demo_study

The bundled sample is the 3 mm study of ``configs/demo-bundled.toml``, which
``benchmarks/build_demo_bundle.py`` runs and bundles with :func:`build` (into a staging
folder; copy it over ``sample_data/demo_study``). ``make demo``'s 6 mm study
(``configs/demo.toml``) bundles the same way.

Copies what the widgets and ``reader-study create`` read (scores, rankings, report, the
non-member holdout record ``holdout.json`` that Open study's member / non-member marks come
from, preprocessed candidates and labels, reconstructions on the preprocessed grid,
deformation maps) and the fold-0 checkpoints; leaves out stage records, logs, the
reconstructions written back to the original grids and the other folds' checkpoints, to keep
the package small. ``provenance.json`` records the cohort as the config names it
(``sample``) instead of the build machine's folder, so each installation resolves it to its
own cached copy (or finds none) as the runner would.

Reconstructions are stored as scaled int16 (a step of max/32767, under 0.00004 in their 0-1
range, with 0 and the maximum exact; every score recomputed from them, e.g. by
``inversion-audit match``, equals the study's to 6 digits), which halves them. Deformation magnitude maps are stored as int16 in
steps of 0.02 mm (the NIfTI slope; readers see millimetres, within 0.01 mm of the study's),
and only inside the candidate's brain (its non-zero voxels or labels, dilated by 1 voxel: the
Deformation widget draws a map over the candidate's brain and leaves the rest transparent,
and the mean displacement it shows is the study's score); outside, the stored map is 0. That
makes a 3 mm map about 8 times smaller than the study's float32 one. A map whose range does
not fit int16 in these steps gets nibabel's own slope instead.
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
#: deformation maps: stored in steps of this many mm, inside the candidate's brain dilated
#: by this many voxels
DEFORMATION_STEP_MM = 0.02
DEFORMATION_MARGIN_VOXELS = 1
VARIANTS = ("skull-stripped", "with-skull")


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
    for path in (tmp / "reconstructions").rglob("*_recon_pre.nii.gz"):
        _as_scaled_int16(path)
    for path in (tmp / "deformation").rglob("*_magnitude.nii.gz"):
        _compact_deformation(path, _candidate_region(tmp, path))
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
    """Rewrite a float NIfTI as int16 with a slope of max / 32767 and no intercept, so that 0
    and the maximum stay exact (a step under 0.00004 of an image in [0, 1]); an image with
    negative values gets nibabel's own slope and intercept."""
    img = nib.load(path)
    if np.issubdtype(img.get_data_dtype(), np.integer):
        return
    data = np.asarray(img.dataobj, dtype=np.float32)
    high = float(data.max(initial=0.0))
    if data.min(initial=0.0) >= 0 and np.isfinite(high) and high > 0:
        slope = np.float32(high / np.iinfo(np.int16).max)  # the header stores it as float32
        steps = np.clip(np.rint(data / slope), 0, np.iinfo(np.int16).max).astype(np.int16)
        out = nib.Nifti1Image(steps, img.affine, img.header.copy())
        out.set_data_dtype(np.int16)
        out.header.set_slope_inter(float(slope), 0.0)
    else:
        out = nib.Nifti1Image(data, img.affine, img.header.copy())
        out.set_data_dtype(np.int16)
    nib.save(out, path)


def _candidate_region(bundle: Path, path: Path) -> np.ndarray | None:
    """The voxels of ``deformation/<run>/<id>__<candidate>_magnitude.nii.gz`` to keep: the
    candidate's non-zero voxels or labels in ``preprocessed/<variant>/``, dilated by
    :data:`DEFORMATION_MARGIN_VOXELS` (``None``: the candidate is not in the bundle)."""
    from scipy import ndimage

    run = path.parent.name
    candidate = path.name[: -len("_magnitude.nii.gz")].split("__", 1)[1]
    variants = [v for v in VARIANTS if f"_{v}_" in f"{run}_"]
    if not variants:
        return None
    pre = bundle / "preprocessed" / variants[0]
    image, labels = pre / f"{candidate}.nii.gz", pre / f"{candidate}_seg.nii.gz"
    if not image.is_file():
        return None
    region = np.asarray(nib.load(image).dataobj) != 0
    if labels.is_file():
        region |= np.asarray(nib.load(labels).dataobj) > 0
    return ndimage.binary_dilation(region, iterations=DEFORMATION_MARGIN_VOXELS)


def _compact_deformation(path: Path, region: np.ndarray | None) -> None:
    """Rewrite a float magnitude map as int16 in steps of :data:`DEFORMATION_STEP_MM` mm,
    0 outside ``region`` (kept whole where ``region`` is ``None`` or on another grid)."""
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if region is not None and region.shape == data.shape:
        data = np.where(region, data, 0.0).astype(np.float32)
    header = img.header.copy()
    steps = np.rint(data / DEFORMATION_STEP_MM)
    if np.all(np.isfinite(steps)) and np.abs(steps).max(initial=0) <= np.iinfo(np.int16).max:
        out = nib.Nifti1Image(steps.astype(np.int16), img.affine, header)
        out.set_data_dtype(np.int16)
        out.header.set_slope_inter(DEFORMATION_STEP_MM, 0.0)
    else:  # out of int16's range in these steps: nibabel picks the slope from the range
        out = nib.Nifti1Image(data, img.affine, header)
        out.set_data_dtype(np.int16)
    nib.save(out, path)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(f"usage: {sys.argv[0]} STUDY [OUT]  (OUT: sample_data/demo_study)")
    default = Path(__file__).resolve().parent / "demo_study"
    target = build(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else default)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {size / 1e6:.1f} MB")
