"""The report's best/median/worst case figures: slices of original, reconstruction, SSIM map
and deformation, read from the study through :class:`~inversion_audit.study.index.StudyIndex`.

Slices follow the radiological convention on arrays stored in RAS voxel order
(axis 0 left->right, 1 posterior->anterior, 2 inferior->superior): the patient's
right is on the viewer's left in axial and coronal views, anterior is on the left
in sagittal views, and superior (axial: anterior) is at the top.
"""

from __future__ import annotations

import logging
import textwrap

import numpy as np

from ..errors import InversionAuditError
from ..study.index import StudyIndex
from .figures import Figure, png_base64

__all__ = [
    "ORIENTATIONS",
    "DISPLAY_FAILURES",
    "display_slice",
    "case_figure",
    "display_deformation",
    "slice_centre",
]

log = logging.getLogger(__name__)

#: what reading, registering or drawing one case may raise; the report says "not available"
#: instead (a damaged or missing file, a registration that fails, a grid that differs)
DISPLAY_FAILURES = (InversionAuditError, OSError, RuntimeError, ValueError)

#: (row label, array axis the slice is taken across, orientation letters left/right/top/bottom)
ORIENTATIONS = (
    ("sagittal", 0, ("A", "P", "S", "I")),
    ("coronal", 1, ("R", "L", "S", "I")),
    ("axial", 2, ("R", "L", "A", "P")),
)


def display_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """A 2D slice of a RAS-ordered volume across ``axis``, oriented for radiological display.

    The remaining two axes (first -> columns, second -> rows) are both reversed:
    rows run superior (or anterior) to inferior (or posterior) from the top, columns
    run from the patient's right (sagittal: anterior) to left (sagittal: posterior).
    """
    plane = np.take(volume, index, axis=axis)
    return plane.T[::-1, ::-1]


def slice_centre(original: np.ndarray) -> tuple[int, int, int]:
    """Voxel of the brain's centre (centre of mass of the original's non-zero voxels), else the volume centre."""
    fg = original > 0
    if fg.any():
        return tuple(int(round(float(c))) for c in np.argwhere(fg).mean(axis=0))
    return tuple(s // 2 for s in original.shape)


def display_deformation(
    study: StudyIndex,
    variant: str,
    subject_id: str,
    original,
    reconstruction: np.ndarray,
    preset: str,
    registration: str = "ants",
) -> tuple[np.ndarray | None, float | None, str]:
    """Register the reconstruction (moving) to its own original (fixed) for display only.

    Exactly as the study scores a pair (:func:`~inversion_audit.matching.pipeline.register_candidate`):
    the centred comparison grid, the mean over the study's scoring mask of the candidate
    (:func:`~inversion_audit.study.scoring.candidate_mask`), one ITK thread, the seed; the
    result is cached on disk. Returns ``(magnitude, mean_mm, reason)``; ``magnitude`` is
    ``None`` (and ``reason`` says why) when the mask cannot be recomputed or the
    registration fails. Nothing is written to the study.
    """
    from ..matching import pipeline
    from ..study.scoring import candidate_mask

    orig = np.asarray(original.array, np.float32)
    rec = np.asarray(reconstruction, np.float32)
    if rec.shape != orig.shape:
        return None, None, f"shape {rec.shape} differs from the original's {orig.shape}"
    if float(rec.max()) == float(rec.min()):
        return None, None, "the reconstruction is constant"
    try:
        mask = candidate_mask(study, variant, subject_id)
    except DISPLAY_FAILURES as exc:  # e.g. the cohort is not on this machine
        return None, None, f"the study's scoring mask is not available ({exc})"
    try:
        res = pipeline.register_candidate(
            rec, orig, mask, original.spacing, preset, registration=registration
        )
    except DISPLAY_FAILURES as exc:  # display only: never fail the report
        log.warning("display deformation failed: %s", exc)
        return None, None, f"registration failed: {type(exc).__name__}: {exc}"
    return np.asarray(res.magnitude.array), res.mean_displacement_mm, ""


def _deformation_panel(
    study: StudyIndex,
    variant: str,
    run: str,
    sid: str,
    original,
    reconstruction: np.ndarray,
    deformation_scored: bool,
    own_mm: float | None,
    preset: str,
    registration: str = "ants",
) -> tuple[np.ndarray | None, dict]:
    """The own-pair deformation magnitude: stored by scoring, computed for display, or not available."""
    try:
        stored = study.read_deformation(run, sid, sid)
    except DISPLAY_FAILURES as exc:  # a damaged map: fall back to a display registration
        log.warning("%s: %s", study.deformation_file(run, sid, sid), exc)
        stored = None
    if stored is not None:
        return stored.array, {
            "source": "scores",
            "mean_mm": own_mm,
            "note": "own original among the SSIM top-k: map stored by the scoring stage",
        }
    if not deformation_scored:
        return None, {
            "source": "not available",
            "mean_mm": None,
            "note": "deformation is not among the study's matching metrics",
        }
    mag, mean, reason = display_deformation(
        study, variant, sid, original, reconstruction, preset, registration
    )
    if mag is None:
        return None, {"source": "not available", "mean_mm": None, "note": reason}
    return mag, {
        "source": "computed for display",
        "mean_mm": mean,
        "preset": preset,
        "registration": registration,
        "note": (
            "own original not among the SSIM top-k: registered at report time for display "
            "only (not in the scores or ranks)"
        ),
    }


def case_figure(
    study: StudyIndex,
    run: str,
    entry: dict,
    label: str,
    case: dict,
    preset: str,
    deformation_scored: bool,
    registration: str = "ants",
) -> Figure | None:
    """Sagittal, coronal and axial slices of original, reconstruction, SSIM map and deformation.

    ``case`` is one of ``entry["cases"]`` (keys ``id``, ``ssim``, ``deformation_mm``).
    Returns ``None`` when the original or the reconstruction is missing from the study.
    """
    import matplotlib.pyplot as plt

    from ..metrics import ssim

    sid = case["id"]
    original = study.read_candidate(entry["variant"], sid)
    reconstruction = study.read_reconstruction(run, sid, "preprocessed")
    if original is None or reconstruction is None:
        return None
    orig, rec = original.array, reconstruction.array
    _, smap = ssim(rec, orig, data_range=1.0, return_map=True)
    dmag, dinfo = _deformation_panel(
        study,
        entry["variant"],
        run,
        sid,
        original,
        rec,
        deformation_scored,
        case.get("deformation_mm"),
        preset,
        registration,
    )
    centre = slice_centre(orig)
    spacing = original.spacing
    dmax = float(np.nanpercentile(dmag, 99.5)) if dmag is not None and dmag.size else 1.0
    columns = (
        ("original", orig, "gray", (0.0, max(float(orig.max()), 1e-6))),
        ("reconstruction", rec, "gray", (0.0, max(float(orig.max()), 1e-6))),
        ("SSIM map", smap, "viridis", (0.0, 1.0)),
        ("deformation (mm)", dmag, "magma", (0.0, max(dmax, 1e-6))),
    )
    fig, axes = plt.subplots(3, 4, figsize=(7.2, 6.0))
    images = {}
    for r, (plane, axis, (left, right, top, bottom)) in enumerate(ORIENTATIONS):
        rest = [a for a in range(3) if a != axis]
        aspect = spacing[rest[1]] / spacing[rest[0]]
        for c, (title, vol, cmap, (vmin, vmax)) in enumerate(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{plane} ({'xyz'[axis]}={centre[axis]})", fontsize=8)
                for x, y, t, ha, va in (
                    (0.02, 0.5, left, "left", "center"),
                    (0.98, 0.5, right, "right", "center"),
                    (0.5, 0.98, top, "center", "top"),
                    (0.5, 0.02, bottom, "center", "bottom"),
                ):
                    ax.text(x, y, t, transform=ax.transAxes, ha=ha, va=va, fontsize=7, color="y")
            if vol is None:
                ax.set_facecolor("#eee")
                if r == 1:
                    reason = textwrap.shorten(dinfo["note"], 140, placeholder="...")
                    ax.text(
                        0.5,
                        0.5,
                        "not available:\n" + textwrap.fill(reason, 24),
                        transform=ax.transAxes,
                        ha="center",
                        va="center",
                        fontsize=6,
                    )
                continue
            images[c] = ax.imshow(
                display_slice(vol, axis, centre[axis]),
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                aspect=aspect,
                interpolation="nearest",
            )
    for c in (2, 3):  # colour bars under the bottom row, without shrinking the panels
        if c in images:
            cb = fig.colorbar(
                images[c],
                cax=axes[-1, c].inset_axes((0.0, -0.14, 1.0, 0.06)),
                orientation="horizontal",
            )
            cb.ax.tick_params(labelsize=6)
    if dinfo["source"] != "scores":
        axes[0, 3].set_title(f"deformation (mm)\n{dinfo['source']}", fontsize=8)
    fig.suptitle(f"{run}: {label} reconstruction {sid} (SSIM {case['ssim']:.3f})", fontsize=9)
    caption = (
        f"{label.capitalize()} reconstruction of {run} by SSIM with its own original: {sid} "
        f"(SSIM {case['ssim']:.3f}). Rows: sagittal, coronal, axial slices through the brain's "
        "centre; radiological display (patient's right on the left; sagittal: anterior on the left)."
    )
    if dinfo["source"] == "scores":
        extra = f" Deformation magnitude from the scoring stage (mean {_mm(dinfo['mean_mm'])})."
    elif dinfo["source"] == "computed for display":
        extra = (
            f" Deformation magnitude computed for display at report time ({registration}, preset {preset}, mean "
            f"{_mm(dinfo['mean_mm'])} over the original's non-zero voxels): the own original was "
            "not among the SSIM top-k, so this pair is not in the scores or ranks."
        )
    else:
        extra = f" Deformation magnitude not available: {dinfo['note']}."
    alt = (
        f"Slices of subject {sid}, the {label} reconstruction of {run} (SSIM {case['ssim']:.3f} "
        "with its own original): columns original, reconstruction, SSIM map and deformation "
        "magnitude; rows sagittal, coronal and axial."
    )
    info = {
        "id": sid,
        "ssim": case["ssim"],
        "slice_voxel": list(centre),
        "deformation": dinfo,
        "alt": alt,
    }
    # 7.2 in at 125 dpi: 900 px, shown at 80% of the report's width without enlarging
    return Figure(png_base64(fig, dpi=125), caption + extra, info)


def _mm(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} mm"
