"""Run study widget: a study run in a child process, its progress, cancel and resume, bad configs.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_run_study.py -q``.
"""

from __future__ import annotations

import json
import re

import pytest
from napari.utils import progress as napari_progress

from gui_fakes import Notifications
from inversion_audit.gui._state import state_for

PLUGIN = "napari-inversion-audit"
TRAIN_TARGET = re.compile(r"train[- ]target")
TRAIN_INVERSION = re.compile(r"train[- ]inversion")


def write_tiny_config(path, cohort, extra_study_keys: str = ""):
    """The smallest useful study: 2 folds, one U-Net, 2 epochs each, no ANTs in the scoring."""
    path.write_text(
        f"""# top-level keys come before the first [table]
variants = ["skull-stripped"]
archs = ["unet"]
threat_models = ["bottleneck"]

[study]
name = "tiny gui"
seed = 1
device = "cpu"
threads = 1
{extra_study_keys}
[cohort]
path = {json.dumps(str(cohort))}

[folds]
n_folds = 2
seed = 0

[preprocess]
spacing = [2.0, 2.0, 2.0]
shape = [32, 32, 32]
divisible_by = 8

[target]
depth = 2
base_filters = 4
epochs = 2
batch_size = 1
lr = 0.01

[inversion]
epochs = 2
batch_size = 1
lr = 0.01

[matching]
metrics = ["ssim", "correlation"]
top_k = 1
"""
    )
    return path


def _widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Run study")
    return widget


def _stages(job) -> list[str]:
    stages: list[str] = []
    job.progressed.connect(lambda done, total, stage: stages.append(stage))
    return stages


def _napari_bar() -> list[str]:
    """The descriptions the running study's napari progress bar shows from now on."""
    (bar,) = [b for b in napari_progress._all_instances if b.desc.startswith("Run study")]
    descriptions: list[str] = []
    bar.events.description.connect(lambda event: descriptions.append(event.value))
    return descriptions


@pytest.mark.slow
def test_cancel_then_resume_runs_the_study_and_opens_it(
    make_napari_viewer, qtbot, tiny_cohort, tmp_path
):
    config = write_tiny_config(tmp_path / "tiny.toml", tiny_cohort)
    out = tmp_path / "study"
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    study_widget = panel.pages["Study"]
    state = state_for(viewer)
    assert state.study is None

    # first run: cancelled as soon as the target network starts training
    with Notifications() as notes:
        job = widget.run(config, out, device="cpu")
        assert job is not None
        first = _stages(job)

        bar = _napari_bar()

        def cancel_on_training(done, total, stage):
            if TRAIN_TARGET.search(stage) and widget.panel.cancel_button.isEnabled():
                widget.panel.cancel_button.click()

        job.progressed.connect(cancel_on_training)
        qtbot.waitUntil(lambda: not job.is_running, timeout=300000)
    assert job.cancelled and job.error is None
    assert any(TRAIN_TARGET.search(s) for s in first), first
    # napari showed the training in the study's progress bar, closed when the job ended
    assert any(TRAIN_TARGET.search(desc) for desc in bar), bar
    assert not napari_progress._all_instances
    assert any("preprocess" in s for s in first), first
    assert not (out / "report.html").exists()
    assert state.study is None and study_widget.entry_list.count() == 0
    assert not any("finished" in m for m in notes.messages()), notes.messages()
    assert "resume" in widget.status.text()
    assert widget.panel.run_button.isEnabled() and not widget.panel.cancel_button.isEnabled()

    # second run: resumes (the preprocessing is not redone) and finishes
    with Notifications() as notes:
        job = widget.run(config, out, device="cpu")
        assert job is not None
        second = _stages(job)
        bar = _napari_bar()
        qtbot.waitUntil(lambda: not job.is_running, timeout=600000)
    assert job.error is None and not job.cancelled, job.error
    assert not any("preprocess" in s for s in second), second
    assert any(TRAIN_INVERSION.search(s) for s in second), second
    assert any(TRAIN_INVERSION.search(desc) for desc in bar), bar
    assert any(TRAIN_TARGET.search(s) for s in first + second)
    report = out / "report.html"
    assert report.is_file()
    infos = [m for m in notes.messages() if "finished" in m]
    assert infos and str(report) in infos[0], notes.messages()
    assert not notes.errors(), notes.errors()
    assert state.study is not None and state.study.root.resolve() == out.resolve()
    assert len(state.study.entries) == 6  # every subject is reconstructed in its private fold
    assert {e.run for e in state.study.entries} == {"unet_skull-stripped_bottleneck"}
    assert study_widget.entry_list.count() == 6  # the Review panel's Study tab lists it


@pytest.mark.parametrize(
    "problem",
    ["unknown key", "missing config", "unknown target key", "empty config", "missing cohort"],
)
def test_bad_config_is_an_error_naming_the_problem(
    make_napari_viewer, tiny_cohort, tmp_path, problem
):
    if problem == "unknown key":
        config = write_tiny_config(tmp_path / "bad.toml", tiny_cohort, 'colour = "blue"\n')
        expected = "study.colour"
    elif problem == "missing config":
        config, expected = tmp_path / "nowhere.toml", "nowhere.toml"
    elif problem == "empty config":
        config, expected = tmp_path / "empty.toml", "[cohort] path"
        config.write_text("")
    elif problem == "missing cohort":
        config = write_tiny_config(tmp_path / "bad.toml", tmp_path / "no-such-cohort")
        expected = "no-such-cohort"
    else:
        config = write_tiny_config(tmp_path / "bad.toml", tiny_cohort)
        config.write_text(config.read_text().replace("[target]", "[target]\nwidth = 3"))
        expected = "width"
    out = tmp_path / "study"
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    with Notifications() as notes:
        job = widget.run(config, out, device="cpu")
    assert job is None and widget.panel.job is None
    errors = notes.errors()
    assert errors and any(expected in e for e in errors), errors
    assert state_for(viewer).study is None
    assert not out.exists()
    assert widget.panel.run_button.isEnabled()


def test_overrides_keep_the_config_unless_given():
    from inversion_audit.errors import ConfigError
    from inversion_audit.study.config import StudyConfig, StudySection, apply_overrides

    config = StudyConfig(study=StudySection(device="cpu", threads=2))
    assert apply_overrides(config) is config
    assert apply_overrides(config, device=None, threads=None).study == config.study
    changed = apply_overrides(config, device="cuda", threads=4)
    assert (changed.study.device, changed.study.threads) == ("cuda", 4)
    assert apply_overrides(config, threads=3).study.device == "cpu"
    with pytest.raises(ConfigError, match="study.device"):
        apply_overrides(config, device="tpu")


@pytest.mark.parametrize(("pick", "reaches"), [("as config", "cpu"), ("auto", "auto")])
def test_device_dropdown_honours_the_config_unless_a_device_is_picked(
    make_napari_viewer, qtbot, tiny_cohort, tmp_path, monkeypatch, pick, reaches
):
    """napari's Run study honours a config's device = 'cpu' when the dropdown says 'as config',
    and overrides it when the user picks a device: the device run_study runs on is its
    ``device`` argument, else the config's ``study.device`` (``runner._Study``)."""
    import inversion_audit.gui.run_widget as run_widget
    from inversion_audit.errors import JobCancelled

    seen: dict = {}

    def fake_run_study_in_child(config, out_dir, device=None, progress=None):
        seen["device"] = device or config.study.device  # as run_study resolves it
        raise JobCancelled("stopped before the study starts")

    monkeypatch.setattr(run_widget, "run_study_in_child", fake_run_study_in_child)
    config = write_tiny_config(tmp_path / "tiny.toml", tiny_cohort)  # device = "cpu"
    widget = _widget(make_napari_viewer())
    combo = widget.device_combo
    assert combo.currentText() == run_widget.AS_CONFIG and combo.itemText(0) == "as config"
    combo.list_devices()  # listing the devices keeps "as config" first and chosen
    assert combo.itemText(0) == "as config" and combo.device() is None
    assert combo.findText("auto") > 0 and combo.findText("cpu") > 0
    combo.setCurrentText(pick)
    widget.config_edit.setText(str(config))
    widget.out_edit.setText(str(tmp_path / "study"))
    with Notifications():
        widget.panel.run_button.click()
        job = widget.panel.job
        assert job is not None
        qtbot.waitUntil(lambda: not job.is_running, timeout=30000)
    assert job.cancelled and seen == {"device": reaches}
