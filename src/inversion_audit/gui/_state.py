"""GUI state shared by the widgets of one viewer: a plain evented dataclass.

The widgets only display and edit this state; they never read each other's Qt widgets.
``state_for(viewer)`` returns the one :class:`AuditState` of a viewer, created on first use;
creating it also puts the orientation overlays on the viewer (:mod:`._orientation`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psygnal import evented

from ..study.index import ReconstructionEntry, StudyIndex

__all__ = ["AuditState", "state_for"]


@evented
@dataclass
class AuditState:
    """What is open and selected in one viewer.

    Attributes
    ----------
    study : the opened study folder, or ``None``.
    entry : the selected reconstruction of the study.
    original_layer, reconstruction_layer : names of the layers showing the selected
        reconstruction's original and the reconstruction itself.
    candidate_id, candidate_layer : the candidate shown beside the reconstruction.
    target_checkpoint, inversion_checkpoint : the checkpoints the Reconstruct widget uses;
        the target may be an external model (MONAI weights, a bundle or nnU-Net folder)
        that the inversion checkpoint's sidecar describes.
    blinded : hide which candidate is the true original.
    """

    study: StudyIndex | None = None
    entry: ReconstructionEntry | None = None
    original_layer: str | None = None
    reconstruction_layer: str | None = None
    candidate_id: str | None = None
    candidate_layer: str | None = None
    target_checkpoint: Path | None = None
    inversion_checkpoint: Path | None = None
    blinded: bool = False


_STATES: dict[int, AuditState] = {}


def state_for(viewer: Any) -> AuditState:
    """The shared :class:`AuditState` of ``viewer`` (dropped when the viewer is garbage-collected).

    napari hands each plugin widget its own proxy of the viewer, so the state is keyed by
    the proxied viewer (``__wrapped__``, the standard object-proxy attribute). The first call
    for a viewer installs its orientation letters, slice position and radiological axial view.
    """
    inner = getattr(viewer, "__wrapped__", None)
    while inner is not None and inner is not viewer:
        viewer, inner = inner, getattr(inner, "__wrapped__", None)
    key = id(viewer)
    state = _STATES.get(key)
    if state is None:
        state = _STATES[key] = AuditState()
        weakref.finalize(viewer, _STATES.pop, key, None)
        from ._orientation import install_orientation

        install_orientation(viewer)
    return state
