"""napari sample data "Inversion Audit: demo study": the small precomputed study in the package.

The study (``inversion_audit/sample_data/demo_study``) was produced by the study runner on
the synthetic sample cohort; opening it reads a few files and trains nothing. The sample
returns the first reconstruction's layers (its original, reconstruction and labels when
available) and opens the study in the viewer's shared state and the Review panel's Study tab.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CohortError
from ..study.index import StudyIndex
from ..study.layout import StudyPaths
from ._compute import LayerData, load_entry_layers

__all__ = ["demo_study", "demo_study_dir"]


def demo_study_dir() -> Path:
    """Where the bundled demo study lives (``inversion_audit/sample_data/demo_study``)."""
    from .. import sample_data

    return Path(sample_data.__file__).resolve().parent / "demo_study"


def open_demo_study(folder: Path | None = None) -> StudyIndex:
    """Open the demo study; a clear :class:`CohortError` when this installation lacks it."""
    folder = demo_study_dir() if folder is None else Path(folder)
    if not StudyPaths(folder).scores.is_file():
        raise CohortError(
            f"{folder}: the demo study is not bundled with this installation. Run a study with "
            "`inversion-audit run CONFIG.toml --out STUDY` and open it with Plugins › Inversion Audit › Review."
        )
    return StudyIndex.open(folder)


def demo_study(folder: Path | None = None) -> list[LayerData]:
    """npe2 sample-data hook: layers of the demo study's first reconstruction."""
    study = open_demo_study(folder)
    entry = study.entries[0]
    layers = load_entry_layers(study, entry)
    _show_in_viewer(study, entry, layers)
    return layers


def _show_in_viewer(study: StudyIndex, entry, layers: list[LayerData]) -> None:
    """Make the current viewer's widgets follow the demo study (no-op without a viewer)."""
    import napari

    from ._compute import META_KEY
    from ._state import state_for

    viewer = napari.current_viewer()
    if viewer is None:
        return
    roles = {
        kwargs["metadata"][META_KEY]["role"]: kwargs["name"] for _, kwargs, _ in reversed(layers)
    }
    state = state_for(viewer)
    state.study = study
    state.original_layer = roles.get("original")
    state.reconstruction_layer = roles.get("reconstruction")
    state.entry = entry
    from .review_panel import open_tab

    open_tab(viewer, "Study")
    if len(viewer.layers) == 0:  # napari adds the sample's layers after this returns
        from qtpy.QtCore import QTimer

        from ._layers import axial_view

        QTimer.singleShot(0, lambda: axial_view(viewer))
