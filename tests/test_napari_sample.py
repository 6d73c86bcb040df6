"""The napari sample ("Inversion Audit: sample subject") and the npe2 manifest.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_napari_sample.py -q``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PLUGIN = "napari-inversion-audit"


def _npe2() -> str:
    local = Path(sys.executable).with_name("npe2")
    return str(local) if local.exists() else (shutil.which("npe2") or "npe2")


def test_npe2_validate_passes():
    result = subprocess.run(
        [_npe2(), "validate", PLUGIN], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_gui_import_does_not_load_torch_or_ants():
    code = (
        "import sys, inversion_audit.gui, inversion_audit.gui.reader, inversion_audit.gui.samples;"
        "print(sorted(m for m in ('torch', 'ants', 'monai', 'nilearn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def _menu_action(menu, *path: str):
    """The QAction at ``path`` (menu texts without '&') below a QMenu or QMenuBar."""
    for action in menu.actions():
        if action.text().replace("&", "") == path[0]:
            return action if len(path) == 1 else _menu_action(action.menu(), *path[1:])
    names = [a.text().replace("&", "") for a in menu.actions()]
    raise AssertionError(f"no menu entry {path[0]!r} among {names}")


@pytest.mark.slow
def test_open_sample_from_napari_menu(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    menu_bar = viewer.window._qt_window.menuBar()
    # File > Open Sample > Inversion Audit > Inversion Audit: sample subject, as a user clicks it
    action = _menu_action(
        menu_bar, "File", "Open Sample", "Inversion Audit", "Inversion Audit: sample subject"
    )
    action.trigger()
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=120_000)
    assert [layer.name for layer in viewer.layers] == ["sub-000_T1", "sub-000_seg"]
    image, labels = viewer.layers
    assert type(image).__name__ == "Image" and type(labels).__name__ == "Labels"
    for layer in (image, labels):
        np.testing.assert_allclose(layer.scale, (2.0, 2.0, 2.0))
        assert np.all(
            np.asarray(layer.translate) < 0
        )  # voxel 0 is right-posterior-inferior of the origin
    np.testing.assert_allclose(image.translate, labels.translate)
    assert set(np.unique(labels.data)) == set(range(10))
    # the origin (anterior commissure) is inside the brain
    assert labels.data[tuple(np.round(labels.world_to_data((0.0, 0.0, 0.0))).astype(int))] > 0
