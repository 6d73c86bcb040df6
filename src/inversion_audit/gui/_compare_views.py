"""The Compare tab's views of a pair on the viewer: overlay, side by side, checkerboard and
curtain, by :mod:`._display`'s one rule (window, opacity and blending, titles).

Checkerboard and curtain share one layer (role ``composite``, named after the view), so
trying every view adds one layer at most. Label layers are hidden while comparing: a tint
misleads the eye.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._compute import META_KEY, checkerboard, curtain
from ._display import (
    FULL_VIEW,
    comparison_window,
    image_window,
    in_unit_range,
    sync_titles,
    window_layers,
)
from ._layers import same_geometry, set_layer

__all__ = [
    "COMPOSITE_ROLE",
    "VIEW_MODES",
    "composite_layer",
    "composite_pair",
    "show_composite",
    "show_images",
    "subject_reconstructions",
]

VIEW_MODES = ("overlay", "side by side", "checkerboard", "curtain")
#: the role of the one checkerboard/curtain layer
COMPOSITE_ROLE = "composite"


def composite_layer(viewer: Any) -> Any | None:
    """The checkerboard/curtain layer, or ``None``."""
    for layer in viewer.layers:
        info = layer.metadata.get(META_KEY, {}) if isinstance(layer.metadata, dict) else {}
        if isinstance(info, dict) and info.get("role") == COMPOSITE_ROLE:
            return layer
    return None


def _hide_labels(viewer: Any) -> None:
    for layer in viewer.layers:
        if type(layer).__name__ == "Labels":
            layer.visible = False


def show_images(
    viewer: Any, original: Any, recon: Any, side: bool, opacity: float, blending: str
) -> None:
    """Overlay (``side`` false: the reconstruction over the original at ``opacity`` and
    ``blending``) or side by side (each whole in its own titled grid panel)."""
    composite = composite_layer(viewer)
    if composite is not None:
        composite.visible = False
    _hide_labels(viewer)
    original.visible = recon.visible = True
    if side:
        for layer in viewer.layers:
            layer.visible = layer.name in (original.name, recon.name)
    window_layers([original, recon], reference=original)
    grid = viewer.canvas.grid
    if grid.enabled != side:
        grid.enabled = side
        viewer.reset_view()
    i, j = viewer.layers.index(original.name), viewer.layers.index(recon.name)
    if j < i:  # the reconstruction is drawn over the original
        viewer.layers.move(j, i)
    original.opacity, original.blending = FULL_VIEW["opacity"], FULL_VIEW["blending"]
    if side:
        recon.opacity, recon.blending = FULL_VIEW["opacity"], FULL_VIEW["blending"]
    else:
        recon.opacity, recon.blending = opacity, blending
    sync_titles(viewer)


def composite_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The two images a checkerboard or curtain mixes, and its window: as they are, in their
    one window, when both lie in the preprocessed 0-1 space; otherwise each scaled by its own
    robust range to 0-1 (their intensities are not comparable)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if in_unit_range(a) and in_unit_range(b):
        return a, b, comparison_window([a, b], a)

    def scaled(x: np.ndarray) -> np.ndarray:
        lo, hi = image_window(x)
        return np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)

    return scaled(a), scaled(b), (0.0, 1.0)


def show_composite(
    viewer: Any,
    original: Any,
    recon: Any,
    aligned: np.ndarray,
    mode: str,
    tile: int,
    axis: int,
    fraction: float,
) -> Any:
    """Show the checkerboard or curtain of ``original`` and ``recon`` (``aligned``: its data
    on the original's grid) in the one composite layer, renamed after ``mode``, instead of
    the two; return that layer."""
    a, b, window = composite_pair(np.asarray(original.data), aligned)
    data = checkerboard(a, b, tile) if mode == "checkerboard" else curtain(a, b, axis, fraction)
    existing = composite_layer(viewer)
    if existing is not None and existing.name != mode:
        existing.name = mode
    grid = viewer.canvas.grid
    if grid.enabled:
        grid.enabled = False
    _hide_labels(viewer)
    layer = set_layer(
        viewer,
        data,
        {
            "name": mode,
            "colormap": "gray",
            "contrast_limits": window,
            "visible": True,
            **FULL_VIEW,
            **same_geometry(original),
            "metadata": {META_KEY: {"role": COMPOSITE_ROLE, "view": mode}},
        },
    )
    original.visible = recon.visible = False
    sync_titles(viewer)
    return layer


def subject_reconstructions(viewer: Any, study: Any, entry: Any) -> dict[str, str]:
    """run -> layer name of the selected subject's loaded reconstructions (of ``study``)."""
    if study is None or entry is None:
        return {}
    out = {}
    for layer in viewer.layers:
        info = layer.metadata.get(META_KEY, {}) if isinstance(layer.metadata, dict) else {}
        if (
            info.get("role") == "reconstruction"
            and info.get("study") == str(study.root)
            and info.get("subject") == entry.reconstruction_id
            and info.get("run")
        ):
            out[info["run"]] = layer.name
    return out
