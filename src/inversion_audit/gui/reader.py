"""napari reader for NIfTI volumes (``.nii``, ``.nii.gz``) in world (RAS mm) coordinates.

Volumes are read in canonical RAS voxel order through :mod:`inversion_audit.io`. Each
layer gets ``scale`` (voxel size) and ``translate`` (world position of voxel 0); for an
oblique affine the remaining rotation/shear is passed as the layer's ``affine`` so that
``affine @ (scale * index + translate)`` reproduces the file's voxel-to-world mapping.
Layer names come from the file name only, never from header free text.

Every volume opens in the radiological axial view (axial slices, the patient's right on the
viewer's left, anterior up; :func:`inversion_audit.gui._layers.axial_view`). On activation
the plugin makes itself napari's reader for ``*.nii`` and ``*.nii.gz`` (the napari setting
``plugins.extension2reader``; napari's builtins cannot read ``.nii.gz``), so drag-and-drop and
File › Open use it without asking which reader to use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VolumeError
from ..io import NIFTI_SUFFIXES, Volume, read_labels, read_volume
from ._layers import layer_geometry

__all__ = [
    "get_reader",
    "read_nifti_layers",
    "layer_geometry",
    "is_label_file",
    "layer_name",
    "prefer_this_reader",
    "activate",
]

#: this plugin's npe2 name, and the file patterns it reads
PLUGIN_NAME = "napari-inversion-audit"
NIFTI_PATTERNS = ("*.nii", "*.nii.gz")

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]

#: at most this many distinct integer values makes an unnamed integer volume a label map
MAX_LABEL_VALUES = 256
_LABEL_NAME = re.compile(r"[_\-.](seg|dseg|labels?|mask|parc|aseg)$", re.IGNORECASE)
_IMAGE_NAME = re.compile(
    r"(^|[_\-.])(t1w?|t2w?|flair|pd|dwi|bold|recon|image|img)($|[_\-.])", re.IGNORECASE
)


def _paths(path: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    return [str(p) for p in path] if isinstance(path, list | tuple) else [str(path)]


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """npe2 reader hook: a reader function for NIfTI paths, ``None`` for anything else."""
    paths = _paths(path)
    if not paths or not all(p.lower().endswith(NIFTI_SUFFIXES) for p in paths):
        return None
    return read_nifti_layers


def layer_name(path: str | os.PathLike[str]) -> str:
    """The file name without ``.nii``/``.nii.gz`` (header text is never used)."""
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_label_file(path: str | os.PathLike[str]) -> bool:
    """Whether a NIfTI file holds a label map.

    True when the name ends in ``_seg``, ``_labels``, ``_mask`` (and similar); otherwise
    when the file stores an unscaled integer dtype with at most :data:`MAX_LABEL_VALUES`
    distinct values and its name does not say it is an intensity image (``_T1``, ...).
    """
    import nibabel as nib

    name = layer_name(path)
    if _LABEL_NAME.search(name):
        return True
    if _IMAGE_NAME.search(name):
        return False
    try:
        img = nib.load(str(path))
        if not np.issubdtype(img.get_data_dtype(), np.integer):
            return False
        slope, inter = img.header.get_slope_inter()
        if slope not in (None, 1.0) or inter not in (None, 0.0):
            return False
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many kinds on corrupt files
        raise VolumeError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})") from exc
    return np.unique(data).size <= MAX_LABEL_VALUES


def _layer(volume: Volume, kind: str) -> LayerData:
    kwargs = {
        "name": layer_name(volume.path),
        "metadata": {"path": str(volume.path)},
        **layer_geometry(volume.affine),
    }
    if kind == "image":
        kwargs["colormap"] = "gray"
    return volume.array, kwargs, kind


def read_nifti_layers(path: str | Sequence[str]) -> list[LayerData]:
    """Read NIfTI files as napari layer data tuples (Labels for label maps, else Image).

    In a napari session the viewer then shows them in the radiological axial view, and a
    file that cannot be read (corrupt, truncated, not NIfTI) is a one-line error
    notification naming it instead of napari's traceback dialog; the other files still
    open. Outside napari such a file raises :class:`VolumeError` naming it.
    """
    viewer = _current_viewer()
    layers = []
    for p in _paths(path):
        try:
            if is_label_file(p):
                layers.append(_layer(read_labels(p), "labels"))
            else:
                layers.append(_layer(read_volume(p), "image"))
        except Exception as exc:  # nibabel and zlib raise many kinds on damaged files
            if viewer is None:
                if isinstance(exc, VolumeError):
                    raise
                raise VolumeError(f"{p}: unreadable NIfTI ({type(exc).__name__}: {exc})") from exc
            _notify_unreadable(p, exc)
    if not layers:
        return [(None,)]  # napari's "read, but nothing to add": no second error dialog
    _axial_view_once_added()
    return layers


def _current_viewer() -> Any | None:
    """napari's current viewer, or ``None`` (no napari session)."""
    try:
        import napari
    except ImportError:  # pragma: no cover - the plugin is used without napari
        return None
    return napari.current_viewer()


def _notify_unreadable(path: str, exc: BaseException) -> None:
    """One error notification naming ``path`` (the core's message when it names the file)."""
    from napari.utils.notifications import show_error

    from ._messages import user_message

    message = user_message(exc)
    if path not in message:
        message = f"{path}: cannot be read as NIfTI ({message})"
    show_error(message)


def _axial_view_once_added() -> None:
    """Switch the current viewer to the axial view after napari has added the layers."""
    viewer = _current_viewer()
    if viewer is None:
        return
    from qtpy.QtCore import QTimer

    from ._layers import axial_view
    from ._orientation import install_orientation

    def show() -> None:
        install_orientation(viewer)  # letters and the slice in mm, also without a plugin widget
        if viewer.layers:
            axial_view(viewer)

    QTimer.singleShot(0, show)


def prefer_this_reader() -> dict[str, str]:
    """Make this plugin napari's reader of ``*.nii``/``*.nii.gz``; return what changed.

    Sets napari's persistent setting ``plugins.extension2reader`` for the patterns that have
    no preference yet or prefer napari's builtins (which cannot read NIfTI); a user's choice
    of another plugin is kept.
    """
    from napari.settings import get_settings

    plugins = get_settings().plugins
    current = dict(plugins.extension2reader)
    changed = {p: PLUGIN_NAME for p in NIFTI_PATTERNS if current.get(p) in (None, "napari")}
    if changed:
        plugins.extension2reader = {**current, **changed}
    return changed


def activate(context: Any = None) -> None:
    """npe2 ``on_activate`` hook (the first time any contribution of the plugin is used)."""
    prefer_this_reader()
