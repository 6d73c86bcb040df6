"""Keep what the reader sees (axes, slice, zoom, pan) while layers are swapped.

Blinding replaces the reconstruction's layer by one on another grid (the centred grid of
:func:`inversion_audit.reader_study.session.common_grid`), so the view is kept in the voxel
coordinates of the layer shown: the same slice and the same spot under the same zoom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ViewState", "capture_view", "restore_view"]


@dataclass(frozen=True)
class ViewState:
    """A viewer's view relative to one layer: axis order, 2D/3D, the slice point and the
    camera centre in that layer's voxel coordinates, zoom and 2D orientation."""

    order: tuple[int, ...]
    ndisplay: int
    point: tuple[float, ...]
    center: tuple[float, ...]
    zoom: float
    orientation2d: tuple[str, ...] | None


def _world_point(viewer: Any) -> np.ndarray:
    """The viewer's slice point with the displayed axes at the camera centre (world)."""
    point = np.asarray(viewer.dims.point, float)
    displayed = list(viewer.dims.displayed)
    center = np.asarray(viewer.camera.center, float)[-len(displayed) :]
    point[displayed] = center
    return point


def capture_view(viewer: Any, layer: Any) -> ViewState | None:
    """The view of ``viewer`` in ``layer``'s voxel coordinates (``None`` without a layer)."""
    if layer is None or viewer.dims.ndim != layer.ndim:
        return None
    data_point = np.asarray(layer.world_to_data(tuple(viewer.dims.point)), float)
    data_center = np.asarray(layer.world_to_data(tuple(_world_point(viewer))), float)
    orientation = getattr(viewer.camera, "orientation2d", None)
    return ViewState(
        tuple(int(a) for a in viewer.dims.order),
        int(viewer.dims.ndisplay),
        tuple(float(v) for v in data_point),
        tuple(float(v) for v in data_center),
        float(viewer.camera.zoom),
        tuple(str(o) for o in orientation) if orientation is not None else None,
    )


def restore_view(viewer: Any, view: ViewState | None, layer: Any) -> None:
    """Show ``view`` again on ``layer`` (possibly a new layer on another grid)."""
    if view is None or layer is None or viewer.dims.ndim != len(view.point):
        return
    viewer.dims.ndisplay = view.ndisplay
    viewer.dims.order = view.order
    if view.orientation2d is not None:
        viewer.camera.orientation2d = view.orientation2d
    point = np.asarray(layer.data_to_world(view.point), float)
    viewer.dims.point = tuple(float(v) for v in point)
    center = np.asarray(layer.data_to_world(view.center), float)
    displayed = list(viewer.dims.displayed)
    viewer.camera.center = tuple(float(center[d]) for d in displayed)
    viewer.camera.zoom = view.zoom
