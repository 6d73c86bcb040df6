"""The wheel ships napari.yaml and the sample-data generator; npe2 finds the plugin."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_manifest_and_sample_generator(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("napari_inversion_audit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "inversion_audit/napari.yaml" in names
    assert "inversion_audit/sample_data/synthetic.py" in names
    assert "inversion_audit/gui/reader.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "napari-inversion-audit = inversion_audit:napari.yaml" in text
    assert "inversion-audit = inversion_audit.cli.main:main" in text


def test_npe2_lists_the_plugin():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-inversion-audit")
    assert manifest.display_name == "Inversion Audit"
    titles = {w.display_name for w in manifest.contributions.widgets}
    # one review entry (the single widgets open as its tabs), the reader study, Run study
    assert titles == {"Review", "Reader study", "Run study"}
