"""Opening the plugin menu stays light: the GUI imports neither torch nor ants.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_imports.py -q``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

WIDGETS = {
    "study_widget": "StudyWidget",
    "reconstruct_widget": "ReconstructWidget",
    "compare_widget": "CompareWidget",
    "deformation_widget": "DeformationWidget",
    "candidates_widget": "CandidatesWidget",
    "run_widget": "RunStudyWidget",
    "review_panel": "ReviewPanel",
    "reader_study_widget": "ReaderStudyWidget",
}

CODE = """
import importlib, json, sys
import napari
viewer = napari.Viewer(show=False)
made = []
for module, name in {widgets}.items():
    cls = getattr(importlib.import_module("inversion_audit.gui." + module), name)
    made.append(type(cls(viewer)).__name__)
importlib.import_module("inversion_audit.gui.demo_study")
heavy = sorted(m for m in ("torch", "ants", "monai") if m in sys.modules)
print(json.dumps({{"made": made, "heavy": heavy}}))
viewer.close()
"""


@pytest.mark.slow
def test_widgets_instantiate_without_importing_torch_or_ants():
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(widgets=WIDGETS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["made"] == list(WIDGETS.values())
    assert result["heavy"] == []
