"""What the reader-study widget does to the napari viewer: the blinded case's layers and the
answer keys while the canvas has focus.

Layers are added from arrays under blinded names, never from file paths, in a fixed order
(Reconstruction, A, B, ...), all on one grid with one intensity window, the case's (see
:mod:`..reader_study.session`); the contrast range of every layer is that window too, so no
layer's controls differ from another's. The viewer gets orientation letters
(:func:`._orientation.install_orientation`). Key bindings put back the ones they replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._layers import axial_view
from ._orientation import install_orientation

if TYPE_CHECKING:
    import napari

__all__ = ["bind_keys", "remove_case_layers", "show_case_layers", "unbind_keys", "viewer_grid"]

#: key -> (our function, the binding it replaced or ``None``)
Bound = dict[str, tuple[Callable, Any]]


def _proxied(viewer: Any) -> Any:
    """The viewer behind napari's plugin proxy (``__wrapped__``), as other widgets key it."""
    inner = getattr(viewer, "__wrapped__", None)
    while inner is not None and inner is not viewer:
        viewer, inner = inner, getattr(inner, "__wrapped__", None)
    return viewer


def viewer_grid(viewer: napari.viewer.Viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def remove_case_layers(viewer: napari.viewer.Viewer, layers: list) -> None:
    """Remove the case's ``layers`` still in the viewer (and the grid they were shown on)."""
    if layers:
        viewer_grid(viewer).enabled = False
    for layer in layers:
        if layer in viewer.layers:
            viewer.layers.remove(layer)


def show_case_layers(viewer: napari.viewer.Viewer, layers: list, images: list) -> list:
    """Show ``images`` (:class:`~..reader_study.CaseImage`) and return their layers, reusing the
    previous case's ``layers`` when they fit; otherwise those are removed. Every layer is
    shown in its image's window (the case's) with that window as its contrast range."""
    install_orientation(_proxied(viewer))  # R/L/A/P/S/I letters, slice in mm (idempotent)
    grid = viewer_grid(viewer)
    reuse = [layer.name for layer in layers] == [im.name for im in images] and all(
        layer in viewer.layers for layer in layers
    )
    if reuse:
        for layer, im in zip(layers, images, strict=True):
            layer.data = im.data
            layer.scale = im.scale
            layer.translate = im.translate
            layer.contrast_limits_range = im.contrast_limits
            layer.contrast_limits = im.contrast_limits
        viewer.reset_view()
        return layers
    grid.enabled = False  # napari rebuilds the grid on every layer change otherwise
    remove_case_layers(viewer, layers)
    shown = []
    for im in images:  # in a fixed role order: Reconstruction, A, B, ...
        layer = viewer.add_image(
            im.data,
            name=im.name,
            scale=im.scale,
            translate=im.translate,
            contrast_limits=im.contrast_limits,
            colormap="gray",
            metadata={},
        )
        layer.contrast_limits_range = im.contrast_limits
        overlay = getattr(layer, "name_overlay", None)  # napari >= 0.6: name in each cell
        if overlay is not None:
            overlay.visible = True
        shown.append(layer)
    grid.enabled = len(images) > 1
    if grid.enabled:  # reconstruction top-left, then A, B, ... (order differs by napari version)
        all_layers = list(viewer.layers)
        if grid.position(all_layers.index(shown[0]), all_layers) != (0, 0):
            grid.stride = -grid.stride
    axial_view(viewer)  # axial slices, radiological convention; fits the camera
    return shown


def bind_keys(viewer: napari.viewer.Viewer, keys: dict[str, Callable]) -> Bound:
    """Bind ``keys`` on the viewer, overwriting; return what :func:`unbind_keys` needs."""
    return {key: (func, viewer.bind_key(key, func, overwrite=True)) for key, func in keys.items()}


def unbind_keys(viewer: napari.viewer.Viewer, bound: Bound) -> None:
    """Undo :func:`bind_keys`: each key still bound to our function gets its previous binding."""
    from napari.utils.key_bindings import coerce_keybinding

    for key, (func, previous) in bound.items():
        if viewer.keymap.get(coerce_keybinding(key)) is not func:
            continue  # someone else rebound it since
        viewer.bind_key(key, None)
        if previous is not None:
            viewer.bind_key(key, previous, overwrite=True)
