"""Errors a clinician can read: the whole file name, one line, never library advice.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_errors.py -q``.
"""

from __future__ import annotations

import os
import pickle
import shutil

import pytest

from inversion_audit.gui._messages import user_message
from inversion_audit.gui.demo_study import demo_study_dir
from inversion_audit.gui.review_panel import open_tab

PLUGIN = "napari-inversion-audit"
DEMO = demo_study_dir()
CHECKPOINTS = DEMO / "checkpoints"


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def _evil_target(folder):
    """A .pt whose unpickling would run a shell command, with a genuine sidecar beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "target_from_a_colleague.pt"
    path.write_bytes(pickle.dumps({"weight": Evil()}))
    shutil.copy(
        CHECKPOINTS / "unet_skull-stripped" / "fold0" / "target.json", path.with_suffix(".json")
    )
    return path


class Notes:
    def __enter__(self):
        from napari.utils.notifications import notification_manager

        self.records, self._m = [], notification_manager
        notification_manager.notification_ready.connect(self.records.append)
        return self

    def __exit__(self, *exc):
        self._m.notification_ready.disconnect(self.records.append)

    def errors(self) -> list[str]:
        return [str(n.message) for n in self.records if "error" in str(n.severity).lower()]


def test_torch_refusal_becomes_one_line_without_advice(tmp_path):
    from inversion_audit.checkpoints import load_weights
    from inversion_audit.errors import CheckpointError

    path = _evil_target(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_weights(path)
    text = user_message(err.value)
    assert str(path) in text and "\n" not in text
    assert "weights_only" not in text and "trusted source" not in text.lower()
    assert "refused" in text
    # an aside that is not advice stays
    assert (
        user_message(ValueError("a.nii.gz: truncated (EOF)\nmore")) == "a.nii.gz: truncated (EOF)"
    )


def _opener(make_napari_viewer, qtbot):
    pytest.importorskip("pytestqt")
    viewer = make_napari_viewer()
    opener = open_tab(viewer, "Open study")
    return viewer, opener


def test_malicious_pickle_notification_names_the_file_without_weights_only(
    make_napari_viewer, qtbot, tmp_path
):
    viewer, opener = _opener(make_napari_viewer, qtbot)
    target = _evil_target(tmp_path / "from a colleague")
    inversion = CHECKPOINTS / "unet_skull-stripped_bottleneck" / "fold0" / "inversion.safetensors"
    with Notes() as notes:
        job = opener.load_checkpoints(target, inversion)
        assert job is not None
        qtbot.waitUntil(lambda: not job.is_running, timeout=60000)
        qtbot.wait(50)
    errors = notes.errors()
    assert errors, notes.records
    assert any(str(target) in e for e in errors), errors
    assert not any("weights_only" in e for e in errors), errors
    assert all("\n" not in e for e in errors)
    assert not (tmp_path / "pwned.txt").exists() and not os.path.exists("pwned.txt")
    assert opener.state.target_checkpoint is None


def test_a_random_file_is_named_as_it_is(make_napari_viewer, qtbot, tmp_path):
    viewer, opener = _opener(make_napari_viewer, qtbot)
    random_file = tmp_path / "random_file.bin"
    random_file.write_bytes(os.urandom(64))
    inversion = CHECKPOINTS / "unet_skull-stripped_bottleneck" / "fold0" / "inversion.safetensors"
    with Notes() as notes:
        assert opener.load_checkpoints(random_file, inversion) is None
    (error,) = notes.errors()
    assert str(random_file) in error and "random_file.bin.safetensors" not in error


def test_failed_open_study_keeps_field_and_list_consistent(make_napari_viewer, qtbot, tmp_path):
    viewer, opener = _opener(make_napari_viewer, qtbot)
    assert opener.open_study(DEMO) is not None
    n = opener.entry_list.count()
    (tmp_path / "not a study").mkdir()
    with Notes() as notes:
        assert opener.open_study(tmp_path / "not a study") is None
    assert notes.errors() and "not a study" in notes.errors()[0]
    assert opener.path_edit.text() == str(opener.state.study.root)
    assert opener.entry_list.count() == n and opener.state.study.root == DEMO.resolve()


def test_a_corrupt_nifti_is_one_notification_naming_it(make_napari_viewer, qtbot, tmp_path):
    pytest.importorskip("pytestqt")
    viewer = make_napari_viewer()
    path = tmp_path / "damaged scan_T1.nii.gz"
    path.write_bytes(b"\x1f\x8b not really a volume")
    with Notes() as notes:
        viewer.open(str(path), plugin=PLUGIN)  # as a drop or File › Open does: no exception
    (error,) = notes.errors()
    assert str(path) in error and "\n" not in error and "Traceback" not in error
    assert len(viewer.layers) == 0
