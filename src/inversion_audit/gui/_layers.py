"""Volumes <-> napari layers with their world geometry (scale, translate, oblique affine).

A layer's voxel-to-world (RAS mm) mapping is read through the public
``layer.data_to_world``; a volume's affine becomes ``scale``/``translate`` (plus
``affine`` when oblique) with :func:`layer_geometry`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io import Volume

__all__ = [
    "layer_geometry",
    "volume_layer_kwargs",
    "layer_affine",
    "layer_volume",
    "same_geometry",
    "set_layer",
    "find_layer",
    "axial_view",
]

_GEOMETRY_KEYS = ("scale", "translate", "affine", "rotate", "shear")


def layer_geometry(affine: np.ndarray) -> dict[str, Any]:
    """``scale``, ``translate`` (and ``affine`` when oblique) layer kwargs for a 4x4 RAS affine."""
    affine = np.asarray(affine, dtype=np.float64)
    linear = affine[:3, :3]
    scale = np.sqrt((linear**2).sum(axis=0))
    translate = affine[:3, 3]
    out: dict[str, Any] = {
        "scale": tuple(float(s) for s in scale),
        "translate": tuple(float(t) for t in translate),
    }
    residual = linear / scale  # rotation (and shear) left after scaling
    if not np.allclose(residual, np.eye(3), atol=1e-6):
        extra = np.eye(4)
        extra[:3, :3] = residual
        extra[:3, 3] = translate - residual @ translate
        out["affine"] = extra
    return out


def volume_layer_kwargs(volume: Volume, name: str, **extra: Any) -> dict[str, Any]:
    """Layer kwargs placing ``volume`` at its world position: name, scale, translate (affine)."""
    return {"name": name, **layer_geometry(volume.affine), **extra}


def layer_affine(layer: Any) -> np.ndarray:
    """The 4x4 voxel-to-world matrix of a 3D layer (composition of its public transforms)."""
    origin = np.asarray(layer.data_to_world((0.0, 0.0, 0.0)), float)
    affine = np.eye(4)
    for axis in range(3):
        unit = np.zeros(3)
        unit[axis] = 1.0
        affine[:3, axis] = np.asarray(layer.data_to_world(tuple(unit)), float) - origin
    affine[:3, 3] = origin
    return affine


def layer_volume(layer: Any) -> Volume:
    """A :class:`Volume` holding a 3D layer's data (float32 for images) and world affine."""
    data = np.asarray(layer.data)
    if data.ndim != 3:
        raise ValueError(f"layer {layer.name!r} is {data.ndim}D; a 3D volume is needed")
    if not np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32, copy=False)
    return Volume(data, layer_affine(layer), None, {"layer": layer.name})


def same_geometry(layer: Any) -> dict[str, Any]:
    """``scale``/``translate`` (``affine``) kwargs that put a new layer exactly on ``layer``."""
    return layer_geometry(layer_affine(layer))


def find_layer(viewer: Any, name: str | None) -> Any | None:
    """The layer called ``name``, or ``None``."""
    if not name:
        return None
    for layer in viewer.layers:
        if layer.name == name:
            return layer
    return None


def set_layer(viewer: Any, data: Any, kwargs: dict[str, Any], kind: str = "image") -> Any:
    """Add a layer, or update the layer of the same name and kind in place (keeping its order).

    Geometry kwargs not given are reset, so a reused layer never keeps a stale position.
    """
    kwargs = dict(kwargs)
    name = kwargs["name"]
    layer = find_layer(viewer, name)
    if layer is not None and type(layer).__name__.lower() != kind:
        viewer.layers.remove(layer.name)
        layer = None
    if layer is None:
        return getattr(viewer, f"add_{kind}")(data, **kwargs)
    geometry = {"scale": (1.0,) * 3, "translate": (0.0,) * 3, "affine": np.eye(4)}
    geometry.update({k: kwargs.pop(k) for k in _GEOMETRY_KEYS if k in kwargs})
    kwargs.pop("name")
    for key, value in geometry.items():
        setattr(layer, key, value)
    layer.data = data
    for key, value in kwargs.items():
        setattr(layer, key, value)
    if kind == "image" and "contrast_limits" not in kwargs:
        layer.reset_contrast_limits()
    return layer


def axial_view(viewer: Any) -> None:
    """Show RAS volumes as axial slices in the radiological convention.

    Slices along the superior axis (2), anterior at the top, the patient's right on the
    screen's left; then fits the camera to the layers.
    """
    viewer.dims.order = (2, 1, 0)
    viewer.camera.orientation2d = ("up", "left")
    viewer.reset_view()
