"""One display rule for the images of a comparison: window, opacity and blending, titles.

**Window.** The images of a comparison (an original and its reconstruction(s); a
reconstruction and the candidate beside it; the two images a Compare view shows) share one
window: from the lowest to the highest of their robust ranges, each image's robust range
being its 0.5th to 99.5th percentile over the comparison's brain voxels (the reference
image's brain: an original's or candidate's non-zero voxels when skull-stripped, its head
otherwise; see :func:`brain_voxels`). So one intensity is one grey in every image of a
comparison, and no image has more than 1% of its brain voxels clipped (under 0.5% at each
end). Images outside the preprocessed 0-1 space (a scan dragged in) each get the same
percentiles over their own brain instead: their intensities are not comparable.

**Opacity and blending.** Overlay: the reconstruction at the Compare tab's opacity and
blending over the original. Side by side and the candidate grid: every image whole (opacity
1, translucent), each in its own grid panel.

**Titles.** A layer's name is drawn in its grid panel only while the grid is on, and only
for visible layers (one layer per panel), so titles never lie on top of each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "FULL_VIEW",
    "OVERLAY_BLENDING",
    "OVERLAY_OPACITY",
    "WINDOW_PERCENTILES",
    "brain_voxels",
    "comparison_window",
    "image_window",
    "in_unit_range",
    "sync_titles",
    "window_layers",
]

#: the robust range of an image: these percentiles of its brain voxels
WINDOW_PERCENTILES = (0.5, 99.5)
#: the Compare tab's defaults: the reconstruction half over the original
OVERLAY_OPACITY = 0.5
OVERLAY_BLENDING = "translucent"
#: side by side: each image whole
FULL_VIEW = {"opacity": 1.0, "blending": "translucent"}


def brain_voxels(array: np.ndarray) -> np.ndarray:
    """The brain (or head) of an image: its non-zero voxels when its background is exactly
    zero (skull-stripped), else the voxels above half Otsu's threshold; all voxels when flat."""
    from ._deformation_display import brain_mask

    return brain_mask(np.asarray(array), None).mask


def image_window(array: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """An image's robust range: :data:`WINDOW_PERCENTILES` of its voxels inside ``mask``
    (its own brain when ``None``), taken at data values so that at most 0.5% lie beyond
    each end."""
    data = np.nan_to_num(np.asarray(array, np.float32))
    if mask is None or np.shape(mask) != data.shape or not np.any(mask):
        mask = brain_voxels(data)
    values = data[np.asarray(mask, bool)]
    if values.size == 0:
        values = data.ravel()
    lo = float(np.percentile(values, WINDOW_PERCENTILES[0], method="lower"))
    hi = float(np.percentile(values, WINDOW_PERCENTILES[1], method="higher"))
    return lo, hi


def comparison_window(
    arrays: Sequence[np.ndarray], reference: np.ndarray | None = None
) -> tuple[float, float]:
    """The one window of a comparison: from the lowest to the highest robust range of
    ``arrays``, each taken over the brain of ``reference`` (the original or candidate; each
    image's own brain when ``None`` or on another grid)."""
    mask = brain_voxels(reference) if reference is not None else None
    ranges = [image_window(a, mask) for a in arrays]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def in_unit_range(array: np.ndarray) -> bool:
    """Whether an image lies in the preprocessed space's 0-1 range."""
    data = np.asarray(array)
    return bool(data.size) and float(np.nanmin(data)) >= 0.0 and float(np.nanmax(data)) <= 1.0


def window_layers(layers: Sequence[Any], reference: Any | None = None) -> tuple[float, float]:
    """Give ``layers`` (napari image layers) their comparison's one window; ``reference`` is
    the layer whose brain the percentiles are taken over. Layers outside the 0-1 space each
    get their own robust range (same percentiles). Returns the window of the 0-1 layers
    (the first layer's own range when there are none)."""
    arrays = [np.asarray(layer.data) for layer in layers]
    ref = np.asarray(reference.data) if reference is not None else None
    unit = [in_unit_range(a) for a in arrays]
    shared = [a for a, u in zip(arrays, unit, strict=True) if u]
    window = comparison_window(shared, ref) if shared else image_window(arrays[0])
    for layer, array, in_unit in zip(layers, arrays, unit, strict=True):
        limits = window if in_unit else image_window(array)
        low, high = layer.contrast_limits_range
        if limits[0] < low or limits[1] > high:
            layer.contrast_limits_range = (min(low, limits[0]), max(high, limits[1]))
        layer.contrast_limits = limits
    return window


def sync_titles(viewer: Any, *_: Any) -> None:
    """Each visible image titled in its own grid panel while the grid is on; no titles
    otherwise (they would be drawn over each other in the one view)."""
    grid = viewer.canvas.grid.enabled
    for layer in viewer.layers:
        overlay = getattr(layer, "name_overlay", None)
        if overlay is not None:
            overlay.visible = bool(grid and layer.visible)
