"""Reconstruct widget: worker, layer geometry, cancel, model cache, bad checkpoints.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_reconstruct.py -q``.
"""

from __future__ import annotations

import numpy as np
import pytest

from gui_fakes import Notifications, blob_image, make_tiny_checkpoints, ticks_while_running
from inversion_audit.gui.review_panel import open_tab

PLUGIN = "napari-inversion-audit"


@pytest.fixture
def checkpoints(tmp_path):
    return make_tiny_checkpoints(tmp_path / "ck", shape=(16, 16, 16), spacing=2.0)


def _widget(viewer, target, inversion):
    widget = open_tab(viewer, "Reconstruct")
    widget.target_edit.setText(str(target))
    widget.inversion_edit.setText(str(inversion))
    widget.device_combo.setCurrentText("cpu")
    return widget


def _raw_image(viewer):
    """A raw-intensity head on a 20x22x18 grid at 2 mm with a world offset."""
    return viewer.add_image(
        blob_image((20, 22, 18), seed=3) * 900.0,
        name="T1",
        scale=(2.0, 2.0, 2.0),
        translate=(-20.0, -24.0, -16.0),
    )


def _run(qtbot, widget):
    job = widget.run()
    assert job is not None
    qtbot.waitUntil(lambda: not job.is_running, timeout=60000)
    return job


def test_reconstruction_layer_lies_on_the_input_grid(
    make_napari_viewer, qtbot, checkpoints, tmp_path
):
    import nibabel as nib

    from inversion_audit.cli.main import main
    from inversion_audit.gui._layers import layer_affine

    viewer = make_napari_viewer()
    image = _raw_image(viewer)
    widget = _widget(viewer, *checkpoints)
    widget.image_combo.choose("T1")
    assert not widget.preprocessed_check.isChecked()  # a raw layer is preprocessed first
    job = _run(qtbot, widget)
    assert job.error is None and not job.cancelled
    out = viewer.layers["T1 reconstruction"]
    assert out.data.shape == image.data.shape
    np.testing.assert_allclose(out.scale, image.scale)
    np.testing.assert_allclose(out.translate, image.translate)
    # the same image as a cohort file through `inversion-audit reconstruct` (the CLI's path)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    nib.save(nib.Nifti1Image(image.data, layer_affine(image)), cohort / "s1_T1.nii.gz")
    target, inversion = checkpoints
    args = f"--target {target} --inversion {inversion} --cohort {cohort} --out {tmp_path / 'r'}"
    assert main(["reconstruct", *args.split(), "--device", "cpu", "--quiet"]) == 0
    expected = nib.load(tmp_path / "r" / "s1_recon.nii.gz")
    np.testing.assert_allclose(expected.affine, layer_affine(image), atol=1e-5)
    np.testing.assert_allclose(out.data, np.asarray(expected.dataobj), atol=1e-5)


def test_preprocessed_input_is_reconstructed_voxel_for_voxel(
    make_napari_viewer, qtbot, checkpoints
):
    from inversion_audit.gui._compute import _load_models_cached

    viewer = make_napari_viewer()
    viewer.add_image(blob_image((16, 16, 16), seed=1), name="pre", scale=(2.0, 2.0, 2.0))
    widget = _widget(viewer, *checkpoints)
    widget.image_combo.choose("pre")
    widget.preprocessed_check.setChecked(True)
    hits = _load_models_cached.cache_info().hits
    _run(qtbot, widget)
    _run(qtbot, widget)  # the second run reuses the cached models
    assert _load_models_cached.cache_info().hits >= hits + 1
    out = viewer.layers["pre reconstruction"]
    assert out.data.shape == (16, 16, 16) and 0.0 <= out.data.min() <= out.data.max() <= 1.0


def _pickle_with_code(path):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path.write_bytes(pickle.dumps({"weight": Evil()}))
    return path


@pytest.mark.parametrize("problem", ["wrong architecture", "untrusted pickle", "missing sidecar"])
def test_bad_checkpoint_is_an_error_naming_the_file(
    make_napari_viewer, qtbot, tmp_path, checkpoints, problem
):
    target, inversion = checkpoints
    if problem == "wrong architecture":
        _, inversion = make_tiny_checkpoints(tmp_path / "segnet", arch="segnet")
    elif problem == "untrusted pickle":
        inversion = _pickle_with_code(tmp_path / "inversion.pt")  # with a valid sidecar beside it
        inversion.with_suffix(".json").write_bytes(checkpoints[1].with_suffix(".json").read_bytes())
    else:
        inversion.with_suffix(".json").unlink()
    viewer = make_napari_viewer()
    _raw_image(viewer)
    before = [(layer.name, layer.data.copy()) for layer in viewer.layers]
    widget = _widget(viewer, target, inversion)
    with Notifications() as notes:
        job = _run(qtbot, widget)
    assert job.error is not None
    errors = notes.errors()
    assert errors and any(str(inversion) in e or inversion.name in e for e in errors), errors
    assert [layer.name for layer in viewer.layers] == [name for name, _ in before]
    np.testing.assert_array_equal(viewer.layers["T1"].data, before[0][1])


def test_ui_keeps_processing_events_while_reconstructing(make_napari_viewer, qtbot, tmp_path):
    # 64^3 at 1 mm: long enough (about a second on CPU) that the UI must tick meanwhile
    big = make_tiny_checkpoints(tmp_path / "big", shape=(64, 64, 64), spacing=1.0)
    viewer = make_napari_viewer()
    viewer.add_image(blob_image((72, 72, 72), seed=4) * 900.0, name="T1", scale=(1.0, 1.0, 1.0))
    widget = _widget(viewer, *big)
    job, ticks, seconds = ticks_while_running(qtbot, widget.run)
    assert job.error is None and "T1 reconstruction" in [layer.name for layer in viewer.layers]
    assert seconds > 0.1, seconds
    assert len(ticks) >= 0.5 * seconds / 0.05 - 1, (len(ticks), seconds)


def test_device_dropdown_lists_auto_and_the_devices_that_exist(make_napari_viewer, checkpoints):
    from inversion_audit.devices import available_devices

    viewer = make_napari_viewer()
    widget = _widget(viewer, *checkpoints)  # torch is imported by the fixture: listed at once
    combo = widget.device_combo
    assert [combo.itemText(i) for i in range(combo.count())] == available_devices()
    assert combo.itemText(0) == "auto" and combo.currentText() == "cpu"
