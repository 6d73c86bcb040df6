"""Reader study widget under Xvfb: log in, answer by keyboard, resume, timing, blinding."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtWidgets import QComboBox, QGroupBox, QWidget  # noqa: E402

from inversion_audit.reader_study import (  # noqa: E402
    PackageStore,
    create_design,
    read_key,
    write_design,
    write_package,
)
from test_reader_study_design import build_reader_source_study, subject_ids  # noqa: E402

KEYS = {x: getattr(Qt.Key, f"Key_{x}") for x in "ABCD0"}


@pytest.fixture(scope="session")
def reader_source_study(tmp_path_factory) -> Path:
    return build_reader_source_study(tmp_path_factory)


@pytest.fixture
def study_db(reader_source_study, tmp_path) -> Path:
    """A reader package (what the widget opens); its key is ``key.sqlite`` beside it."""
    design = create_design(
        reader_source_study, ["alice", "bob"], n_candidates=4, quality_only_cases=1, seed=2
    )
    return write_package(tmp_path / "pkg", tmp_path / "key.sqlite", design)


def open_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-inversion-audit", "Reader study")
    qtbot.waitUntil(widget.isVisible)
    return viewer, dock, widget


def answer_case(
    qtbot, widget, key: str, confidence: int = 4, anatomy: int = 3, comment: str = ""
) -> None:
    """Answer the shown case with key presses (and clicks on the 1-5 scales), then Enter."""
    qs = widget.session.questions()
    if "match" in qs:
        qtbot.keyClick(widget, KEYS[key])
        qtbot.mouseClick(widget.confidence_group.button(confidence), Qt.MouseButton.LeftButton)
    qtbot.mouseClick(widget.anatomy_group.button(anatomy), Qt.MouseButton.LeftButton)
    qtbot.wait(30)
    if comment:  # typed letters stay in the text box; Enter there still commits
        qtbot.keyClicks(widget.comment_edit, comment)
        qtbot.keyClick(widget.comment_edit, Qt.Key.Key_Return)
    else:
        qtbot.keyClick(widget, Qt.Key.Key_Return)


def visible_strings(widget: QWidget, dock: QWidget, viewer) -> list[str]:
    """Every string a reader could see: texts, titles, tooltips, placeholders, items, layers."""
    out = [viewer.title, dock.windowTitle()]
    for w in [widget, *widget.findChildren(QWidget)]:
        out += [w.windowTitle(), w.toolTip(), w.statusTip(), w.whatsThis(), w.accessibleName()]
        for attr in ("text", "placeholderText", "title", "currentText"):
            if hasattr(w, attr) and callable(getattr(w, attr)):
                try:
                    out.append(str(getattr(w, attr)()))
                except TypeError:
                    pass
        if isinstance(w, QComboBox):
            out += [w.itemText(i) for i in range(w.count())]
        if isinstance(w, QGroupBox):
            out.append(w.title())
    for layer in viewer.layers:
        out += [layer.name, str(layer.source.path or ""), str(layer.metadata)]
    return out


@pytest.mark.slow
def test_widget_flow_answers_three_cases_by_keyboard(make_napari_viewer, qtbot, study_db):
    viewer, dock, widget = open_widget(make_napari_viewer, qtbot)
    assert widget.open_database(str(study_db))
    assert not widget.log_in("mallory")
    assert widget.log_in("Alice")
    design = read_key(study_db.parent / "key.sqlite")[0]  # the coordinator's view
    order = design.orders["alice"]
    assert widget.progress_label.text() == "case 1 of 7"
    pressed = []
    for i, key in enumerate(["B", "0", "C"]):
        case = design.case(order[i])
        shown = [layer.name for layer in viewer.layers]
        if case.kind == "match":
            assert sorted(shown) == ["A", "B", "C", "D", "Reconstruction"]
            grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
            assert grid.enabled
            layers = list(viewer.layers)
            positions = {
                name: grid.position(layers.index(viewer.layers[name]), layers) for name in shown
            }
            assert positions["Reconstruction"] == (0, 0)
            assert positions["A"] == (0, 1) and positions["B"] == (0, 2)
        else:
            assert shown == ["Reconstruction"]
        for layer in viewer.layers:
            assert tuple(layer.scale) == pytest.approx((2.0, 2.0, 2.0))
            assert tuple(layer.translate) == pytest.approx((-31.0, -31.0, -31.0))  # centred
        answer_case(qtbot, widget, key, confidence=i + 2, comment=f"note {i}: A or B?")
        pressed.append((case, key))
        assert widget.progress_label.text() == f"case {i + 2} of 7", widget.status_label.text()

    with PackageStore(study_db) as store:
        rows = store.history("alice")
    assert [r.case_id for r in rows] == list(order[:3])
    for row, (case, key) in zip(rows, pressed, strict=True):
        # the store keeps the case's own label of the letter this reader saw
        shown = design.shown_labels("alice", case.case_id)
        expected = (
            ("none" if key == "0" else shown["ABCD".index(key)]) if case.kind == "match" else None
        )
        assert row.match == expected and row.anatomy == 3 and row.comment.startswith("note")
        assert row.seconds > 0.01 and row.time_shown <= row.time_answered

    # Enter without answers saves nothing
    qtbot.keyClick(widget, Qt.Key.Key_Return)
    assert "Please answer" in widget.status_label.text()
    with PackageStore(study_db) as store:
        assert len(store.history("alice")) == 3

    # going back shows the saved answer; changing it appends a revision
    qtbot.mouseClick(widget.previous_button, Qt.MouseButton.LeftButton)
    assert widget.progress_label.text() == "case 3 of 7"
    assert widget.comment_edit.text() == "note 2: A or B?"
    assert widget.anatomy_group.checkedId() == 3
    widget.anatomy_group.button(5).click()
    qtbot.keyClick(widget, Qt.Key.Key_Return)
    with PackageStore(study_db) as store:
        trail = store.history("alice", order[2])
    assert [(r.revision, r.anatomy) for r in trail] == [(1, 3), (2, 5)]

    # the clock stops while the widget is hidden
    widget.hide()
    assert not widget.session.timer.running
    widget.show()
    assert widget.session.timer.running
    # ... and while the application is in the background
    widget._on_app_state(Qt.ApplicationState.ApplicationInactive)
    assert not widget.session.timer.running
    widget._on_app_state(Qt.ApplicationState.ApplicationActive)
    assert widget.session.timer.running

    # logging in again (e.g. after a crash) resumes at the first unanswered case
    assert widget.log_in("bob") and widget.progress_label.text() == "case 1 of 7"
    assert widget.log_in("alice") and widget.progress_label.text() == "case 4 of 7"

    # viewer shortcuts go away with the widget
    ours = {id(f) for f, _ in widget._bound.values()}
    assert len(ours) == 10 and sum(id(f) in ours for f in viewer.keymap.values()) == 10
    viewer.window.remove_dock_widget(dock)
    assert not any(id(f) in ours for f in viewer.keymap.values())


def test_viewer_shortcuts_answer_while_canvas_has_focus(make_napari_viewer, qtbot, study_db):
    viewer, dock, widget = open_widget(make_napari_viewer, qtbot)
    widget.open_database(str(study_db))
    widget.log_in("bob")
    from napari.utils.key_bindings import coerce_keybinding

    bound = {str(k) for k in viewer.keymap}
    assert {str(coerce_keybinding(k)) for k in ("A", "0", "Enter")} <= bound
    if widget.session.questions()[0] == "match":
        viewer.keymap[coerce_keybinding("C")](viewer)
        assert widget.match_buttons["C"].isChecked()
        viewer.keymap[coerce_keybinding("0")](viewer)
        assert widget.match_buttons["none"].isChecked()


@pytest.mark.slow
def test_nothing_shown_names_a_subject_file_score_or_fold(
    make_napari_viewer, qtbot, study_db, tmp_path
):
    viewer, dock, widget = open_widget(make_napari_viewer, qtbot)
    widget.open_database(str(study_db))
    widget.log_in("bob")
    forbidden = [s.lower() for s in subject_ids()] + [
        ".nii",
        "recon_pre",
        "ssim",
        "fold",
        "preprocessed",
    ]
    seen = 0
    while not widget.session.done:
        strings = visible_strings(widget, dock, viewer)
        leaks = [s for s in strings if any(f in s.lower() for f in forbidden)]
        assert not leaks, leaks
        seen += 1
        answer_case(qtbot, widget, "A")
    assert seen == 7
    assert "7 of 7 cases answered" in widget.progress_label.text()
    assert not [
        s for s in visible_strings(widget, dock, viewer) if any(f in s.lower() for f in forbidden)
    ]


def test_widget_refuses_a_key_and_a_single_file_database(make_napari_viewer, qtbot, study_db):
    """Readers open the package only: the key, or a single-file database of earlier versions
    (which holds the key), is refused with a line saying what to open instead."""
    viewer, dock, widget = open_widget(make_napari_viewer, qtbot)
    key = study_db.parent / "key.sqlite"
    assert not widget.open_database(str(key))
    assert "answer key" in widget.status_label.text() and widget.study is None
    design = read_key(key)[0]
    legacy = write_design(study_db.parent / "old.sqlite", design)
    assert not widget.open_database(str(legacy))
    assert "split" in widget.status_label.text() and widget.study is None
    assert widget.open_database(str(study_db)) and widget.study.n_cases == 7
