"""Orientation as radiologists expect: axial first, radiological convention, edge letters, mm.

napari's world frame is RAS mm (a layer's ``data_to_world`` maps voxels to RAS, see
:mod:`._layers`). A layer whose ``metadata["affine"]`` holds its NIfTI voxel-to-RAS matrix
may use another world frame (an LPS one, say): the anatomy of each world axis is then
``metadata["affine"] @ inverse(data_to_world)``. :func:`install_orientation` puts on a viewer

* R/L/A/P/S/I letters on the canvas edges (napari canvas text overlays, one per edge and grid
  panel), recomputed when the displayed axes, the camera (flips, 3D rotation) or the layers
  change;
* the current slice's position in mm ("axial  z = 12.0 mm"), and anatomical slider names
  ("S–I (z)") instead of napari's "-1";
* the radiological axial view (axial slices, anterior up, the patient's right on the screen's
  left) whenever a 3D volume is added to a viewer that showed none.

Nothing drawn on the canvas overlaps (napari stacks the overlays of one canvas position, but
not those of different positions). Titles (layer names, one per grid panel: :mod:`._display`)
sit in each panel's top-left corner and the slice position in the canvas's bottom-left
corner; the edge letters sit at the middle of each panel's edges, the top one moved in by
blank lines as tall as the titles while titles are drawn and the bottom one by blank lines as
tall as the slice position while that is shown (:func:`letter_texts`), so that however narrow
a panel, a letter never shares a row with a title or the slice position.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
from nibabel.orientations import aff2axcodes

from ._layers import layer_affine

__all__ = [
    "OPPOSITE",
    "OVERLAY_KEYS",
    "AXIS_NAMES",
    "install_orientation",
    "spatial_layer",
    "world_to_ras",
    "world_axcodes",
    "edge_letters",
    "letter_texts",
    "slice_text",
    "title_lines",
    "radiological_view",
]

OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
#: slider names of the anatomical axes (as the Compare widget names them), by RAS axis
AXIS_NAMES = ("R–L (x)", "A–P (y)", "S–I (z)")
_RAS_AXIS = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
_PLANES = ("sagittal", "coronal", "axial")  # the plane sliced across RAS axis 0, 1, 2
#: canvas edge -> (unit screen vector (right, up), napari canvas position)
_EDGES = {
    "top": ((0.0, 1.0), "top_center"),
    "bottom": ((0.0, -1.0), "bottom_center"),
    "left": ((-1.0, 0.0), "middle_left"),
    "right": ((1.0, 0.0), "middle_right"),
}
#: the keys of this module's overlays in ``viewer.canvas.overlays``
OVERLAY_KEYS = {edge: f"inversion_audit_orientation_{edge}" for edge in _EDGES} | {
    "slice": "inversion_audit_slice_position"
}
#: an axis counts towards a (3D, oblique) edge letter when it projects at least this much on it
_MIN_PROJECTION = 0.38  # cos(67.5 degrees)
_GEOMETRY_EVENTS = ("affine", "scale", "translate", "rotate", "shear")
#: events of a layer that show, hide or change its title
_TITLE_EVENTS = ("visible", "name")
#: the text of an empty line that keeps its height (vispy drops a last line left empty)
_BLANK_LINE = "\u00a0"
#: font sizes (points) of the edge letters and of the slice position
LETTER_FONT, SLICE_FONT = 14, 11


def _is_spatial(layer: Any) -> bool:
    """Whether ``layer`` is a 3D (not RGB) image or label volume."""
    from napari.layers import Image, Labels

    return (
        isinstance(layer, Image | Labels) and layer.ndim == 3 and not getattr(layer, "rgb", False)
    )


def spatial_layer(viewer: Any) -> Any | None:
    """The 3D image or labels layer that defines the anatomy: the active one, else the topmost."""
    active = viewer.layers.selection.active
    if active is not None and _is_spatial(active):
        return active
    candidates = [layer for layer in viewer.layers if _is_spatial(layer)]
    visible = [layer for layer in candidates if layer.visible]
    return (visible or candidates or [None])[-1]


def world_to_ras(layer: Any) -> np.ndarray:
    """4x4 matrix from the world coordinates of ``layer`` to RAS mm (identity unless
    ``metadata["affine"]`` gives the layer's voxel-to-RAS matrix)."""
    ras = layer.metadata.get("affine") if isinstance(layer.metadata, dict) else None
    if ras is None:
        return np.eye(4)
    try:
        ras = np.asarray(ras, dtype=np.float64)
        out = ras @ np.linalg.inv(layer_affine(layer))
    except (TypeError, ValueError, np.linalg.LinAlgError):
        return np.eye(4)
    return out if out.shape == (4, 4) and np.isfinite(out).all() else np.eye(4)


def world_axcodes(viewer: Any) -> tuple[str | None, ...] | None:
    """The anatomical direction of each viewer world axis (``None`` for non-spatial axes),
    read from :func:`spatial_layer`; ``None`` when no 3D volume is shown."""
    layer = spatial_layer(viewer)
    if layer is None:
        return None
    codes = aff2axcodes(world_to_ras(layer))
    if any(code is None for code in codes):
        return None
    offset = viewer.dims.ndim - 3  # a layer's axes are the viewer's last ones
    return (None,) * offset + tuple(codes)


def _screen_vectors(viewer: Any) -> dict[int, np.ndarray]:
    """Where a step along each displayed world axis goes on screen, as (right, up) vectors."""
    displayed = tuple(viewer.dims.displayed)
    camera = viewer.scene.camera
    if len(displayed) == 2:
        vertical, horizontal = (str(v) for v in camera.orientation2d)
        row, col = displayed
        return {
            row: np.array([0.0, 1.0 if vertical == "up" else -1.0]),
            col: np.array([1.0 if horizontal == "right" else -1.0, 0.0]),
        }
    up = np.asarray(camera.up_direction, dtype=np.float64)
    view = np.asarray(camera.view_direction, dtype=np.float64)
    right = np.cross(view, up)  # vispy's 3D scene is right-handed in displayed order
    if str(camera.handedness) == "left":
        right = -right
    return {axis: np.array([right[i], up[i]]) for i, axis in enumerate(displayed)}


def edge_letters(viewer: Any) -> dict[str, str] | None:
    """The letters at the canvas edges (``{"top": "A", "left": "R", ...}``), the dominant
    direction first ("RA" on an oblique 3D edge); ``None`` when no 3D volume is shown."""
    codes = world_axcodes(viewer)
    if codes is None:
        return None
    vectors = _screen_vectors(viewer)
    out = {}
    for edge, (unit, _) in _EDGES.items():
        parts = []
        for axis, vector in vectors.items():
            code = codes[axis] if axis < len(codes) else None
            projection = float(np.dot(vector, unit))
            if code is not None and abs(projection) >= _MIN_PROJECTION:
                parts.append((-abs(projection), code if projection > 0 else OPPOSITE[code]))
        out[edge] = "".join(letter for _, letter in sorted(parts))
    return out


def slice_text(viewer: Any) -> str:
    """The sliced spatial axis and the slice's RAS position in mm ("axial  z = 12.0 mm")."""
    layer = spatial_layer(viewer)
    codes = world_axcodes(viewer)
    if layer is None or codes is None:
        return ""
    offset = viewer.dims.ndim - 3
    point = np.asarray(viewer.dims.point[offset:], dtype=np.float64)
    ras = (world_to_ras(layer) @ np.append(point, 1.0))[:3]
    lines = []
    for axis in viewer.dims.not_displayed:
        code = codes[axis]
        if code is not None:
            k = _RAS_AXIS[code]
            lines.append(f"{_PLANES[k]}  {'xyz'[k]} = {ras[k]:.1f} mm")
    return "\n".join(lines)


def title_lines(viewer: Any) -> int:
    """How many lines of the edge letters' font the titles drawn on the canvas take (0 when
    none is drawn): a visible layer's name overlay shows its name in the top-left corner of
    its panel."""
    lines = 0
    for layer in viewer.layers:
        overlay = getattr(layer, "name_overlay", None)
        if layer.visible and overlay is not None and overlay.visible:
            height = (str(layer.name).count("\n") + 1) * float(overlay.font_size)
            lines = max(lines, math.ceil(height / LETTER_FONT))
    return lines


def letter_texts(viewer: Any) -> dict[str, str]:
    """The text of each edge's overlay: :func:`edge_letters`, the top one under as many blank
    lines as the titles take (:func:`title_lines`) and the bottom one over as many as
    :func:`slice_text` takes; empty without a 3D volume."""
    letters = edge_letters(viewer) or {}
    texts = {edge: letters.get(edge, "") for edge in _EDGES}
    if texts["top"]:
        texts["top"] = "\n" * title_lines(viewer) + texts["top"]
    below = slice_text(viewer)
    if texts["bottom"] and below:
        lines = math.ceil((below.count("\n") + 1) * SLICE_FONT / LETTER_FONT)
        texts["bottom"] += ("\n" + _BLANK_LINE) * lines
    return texts


def radiological_view(viewer: Any) -> bool:
    """Show axial slices in the radiological convention: anterior up, the patient's right on
    the screen's left; fit the camera. ``False`` (nothing changed) without a 3D volume."""
    codes = world_axcodes(viewer)
    if codes is None:
        return False
    by_ras = {_RAS_AXIS[code]: axis for axis, code in enumerate(codes) if code is not None}
    others = [axis for axis, code in enumerate(codes) if code is None]
    viewer.dims.order = (*others, by_ras[2], by_ras[1], by_ras[0])
    viewer.scene.camera.orientation2d = (
        "up" if codes[by_ras[1]] == "A" else "down",
        "left" if codes[by_ras[0]] == "R" else "right",
    )
    viewer.reset_view()
    return True


class _Orientation:
    """Keeps one viewer's orientation overlays up to date (holds the viewer weakly)."""

    def __init__(self, viewer: Any) -> None:
        from napari.components.overlays import TextOverlay

        self._viewer = weakref.ref(viewer)
        self._labels: dict[int, str] = {}  # the slider names this class set
        overlays = viewer.canvas.overlays
        for edge, (_, position) in _EDGES.items():
            overlays[OVERLAY_KEYS[edge]] = TextOverlay(
                position=position, font_size=LETTER_FONT, box=False, gridded=True
            )
        overlays[OVERLAY_KEYS["slice"]] = TextOverlay(
            position="bottom_left", font_size=SLICE_FONT, box=False
        )
        dims, camera = viewer.dims.events, viewer.scene.camera.events
        for emitter in (dims.order, dims.ndisplay, dims.ndim, dims.point, dims.range):
            emitter.connect(self.update)
        for emitter in (camera.orientation, camera.angles):
            emitter.connect(self.update)
        viewer.canvas.grid.events.enabled.connect(self.update)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self.update)
        viewer.layers.events.reordered.connect(self.update)
        viewer.layers.selection.events.active.connect(self.update)
        for layer in viewer.layers:
            self._watch(layer)
        self.update()

    def _watch(self, layer: Any) -> None:
        for name in (*_GEOMETRY_EVENTS, *_TITLE_EVENTS):
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(self.update)
        title = getattr(layer, "name_overlay", None)
        if title is not None:
            title.events.visible.connect(self.update)
            title.events.font_size.connect(self.update)

    def _on_inserted(self, event: Any) -> None:
        viewer = self._viewer()
        if viewer is None:
            return
        self._watch(event.value)
        new = event.value
        if _is_spatial(new) and not any(
            _is_spatial(layer) for layer in viewer.layers if layer is not new
        ):
            radiological_view(viewer)
        self.update()

    def update(self, event: Any = None) -> None:
        """Recompute the edge letters, the slice position and the slider names."""
        viewer = self._viewer()
        if viewer is None:
            return
        overlays = viewer.canvas.overlays
        texts = letter_texts(viewer)
        for edge in _EDGES:
            overlay = overlays.get(OVERLAY_KEYS[edge])
            if overlay is not None:
                overlay.text = texts[edge]
                overlay.visible = bool(overlay.text)
        slice_overlay = overlays.get(OVERLAY_KEYS["slice"])
        if slice_overlay is not None:
            slice_overlay.text = slice_text(viewer)
            slice_overlay.visible = bool(slice_overlay.text)
        self._name_sliders(viewer)

    def _name_sliders(self, viewer: Any) -> None:
        """Anatomical names on the sliders of spatial axes, keeping names a user gave."""
        codes = world_axcodes(viewer)
        if codes is None:
            return
        ndim = viewer.dims.ndim
        labels = list(viewer.dims.axis_labels)
        for axis, code in enumerate(codes):
            if code is None:
                continue
            mine = labels[axis] == str(axis - ndim) or labels[axis] == self._labels.get(axis)
            if mine:
                labels[axis] = self._labels[axis] = AXIS_NAMES[_RAS_AXIS[code]]
        if tuple(labels) != tuple(viewer.dims.axis_labels):
            viewer.dims.axis_labels = tuple(labels)


_INSTALLED: dict[int, _Orientation] = {}


def install_orientation(viewer: Any) -> None:
    """Put orientation letters, the slice position in mm and anatomical slider names on
    ``viewer`` and show each first 3D volume in the radiological axial view (idempotent; a
    stand-in that is no napari viewer is left alone)."""
    from napari.components import ViewerModel

    key = id(viewer)
    if key in _INSTALLED or not isinstance(viewer, ViewerModel):
        return
    _INSTALLED[key] = _Orientation(viewer)
    weakref.finalize(viewer, _INSTALLED.pop, key, None)
