"""A selection's layers in the viewer, named or blinded, and the switch between the two.

Named: ``original``, ``recon`` (``recon 2``... for the subject's other runs) and ``labels``,
the subject and run in each layer's metadata. Blinded: one ``recon`` on the centred grid of
:func:`~inversion_audit.reader_study.session.common_grid` whose metadata names no subject;
the original and labels leave the viewer. Either switch first removes every layer computed
against the shown pair (Compare's difference, SSIM map and view layer, Deformation's map and
vectors) and the candidate beside the reconstruction, and keeps the view (axes, slice, zoom
and pan, in the reconstruction's voxels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..reader_study.session import DISPLAY_WINDOW, common_grid
from ._compute import META_KEY, RECONSTRUCTION_LAYER, LayerData
from ._display import FULL_VIEW, sync_titles, window_layers
from ._layers import find_layer, set_layer
from ._view import ViewState, capture_view, restore_view

if TYPE_CHECKING:
    from ..study.index import StudyIndex
    from ._state import AuditState

__all__ = [
    "DERIVED_ROLES",
    "ENTRY_ROLES",
    "blind_layers",
    "blinded_metadata",
    "finish_unblinding",
    "layer_info",
    "remove_derived_layers",
    "show_entry_layers",
    "start_unblinding",
]

#: roles of a selection's layers (named after the subject in their metadata)
ENTRY_ROLES = ("original", "reconstruction", "labels")
#: roles of layers computed against a pair, and the candidate beside the reconstruction
DERIVED_ROLES = (
    "difference",
    "ssim_map",
    "composite",
    "deformation",
    "deformation_vectors",
    "candidate",
)


def layer_info(layer: Any) -> dict[str, Any]:
    """The plugin's record of where a layer comes from (``{}`` for other layers)."""
    meta = layer.metadata if isinstance(layer.metadata, dict) else {}
    info = meta.get(META_KEY)
    return info if isinstance(info, dict) else {}


def blinded_metadata(role: str) -> dict[str, Any]:
    """Metadata of a blinded layer: its role only, no subject, run or study."""
    return {META_KEY: {"role": role, "blinded": True}}


def remove_derived_layers(viewer: Any) -> list[str]:
    """Remove the layers of :data:`DERIVED_ROLES`; return their names."""
    gone = [la for la in viewer.layers if layer_info(la).get("role") in DERIVED_ROLES]
    for layer in gone:
        viewer.layers.remove(layer)
    return [la.name for la in gone]


def show_entry_layers(viewer: Any, study: StudyIndex, layers: list[LayerData]) -> dict[str, str]:
    """Put a selection's layers in the viewer (labels hidden: a tint misleads the eye),
    reusing layers of the same name, then remove the previous selection's other layers of
    this study and any blinded ones. Returns role -> layer name."""
    names = [kwargs["name"] for _, kwargs, _ in layers]
    for data, kwargs, kind in layers:
        if kind == "labels":
            kwargs = {**kwargs, "visible": False}
        set_layer(viewer, data, kwargs, kind)
    for layer in list(viewer.layers):
        info = layer_info(layer)
        ours = info.get("study") == str(study.root) or info.get("blinded")
        if layer.name not in names and ours and info.get("role") in ENTRY_ROLES:
            viewer.layers.remove(layer)
    return {
        kwargs["metadata"][META_KEY]["role"]: kwargs["name"] for _, kwargs, _ in reversed(layers)
    }


def blind_layers(viewer: Any, state: AuditState) -> bool:
    """Swap the selection's named layers for one blinded ``recon``, keeping the view."""
    recon = find_layer(viewer, state.reconstruction_layer)
    if state.entry is None or recon is None or layer_info(recon).get("blinded"):
        return False
    view = capture_view(viewer, recon)
    remove_derived_layers(viewer)  # computed against the true original, or named after it
    if viewer.canvas.grid.enabled:
        viewer.canvas.grid.enabled = False
    data = np.clip(np.nan_to_num(np.asarray(recon.data, np.float32)), *DISPLAY_WINDOW)
    (data,), scale, translate = common_grid([data], [tuple(recon.scale)])
    layer = set_layer(
        viewer,
        data,
        {
            "name": RECONSTRUCTION_LAYER,
            "scale": scale,
            "translate": translate,
            "colormap": "gray",
            "visible": True,
            **FULL_VIEW,  # alone: the whole image
            "metadata": blinded_metadata("reconstruction"),
        },
    )
    layer.contrast_limits_range = DISPLAY_WINDOW
    window_layers([layer])
    for other in list(viewer.layers):  # the original, labels, other runs: named after the subject
        info = layer_info(other)
        if other is not layer and info.get("role") in ENTRY_ROLES and not info.get("blinded"):
            viewer.layers.remove(other)
    state.candidate_id = state.candidate_layer = None
    state.original_layer = None
    state.reconstruction_layer = layer.name
    restore_view(viewer, view, layer)
    sync_titles(viewer)
    return True


def start_unblinding(viewer: Any, state: AuditState) -> ViewState | None:
    """Remove what was computed or shown while blinded; return the view to keep (``None``
    when nothing is blinded)."""
    blinded = [la for la in viewer.layers if layer_info(la).get("blinded")]
    if not blinded:
        return None
    recon = find_layer(viewer, state.reconstruction_layer)
    view = capture_view(viewer, recon) if recon is not None else None
    remove_derived_layers(viewer)
    state.candidate_id = state.candidate_layer = None
    if viewer.canvas.grid.enabled:
        viewer.canvas.grid.enabled = False
    return view


def finish_unblinding(
    viewer: Any,
    state: AuditState,
    study: StudyIndex,
    layers: list[LayerData],
    view: ViewState | None,
) -> None:
    """Show the selection's named layers again (replacing the blinded ones) in ``view``."""
    roles = show_entry_layers(viewer, study, layers)
    for layer in [la for la in viewer.layers if layer_info(la).get("blinded")]:
        viewer.layers.remove(layer)
    state.original_layer = roles.get("original")
    state.reconstruction_layer = roles.get("reconstruction")
    restore_view(viewer, view, find_layer(viewer, state.reconstruction_layer))
    sync_titles(viewer)
