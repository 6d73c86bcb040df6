"""Open study on a study with a holdout and defended runs (one tiny study made by the real
runner): members and non-members marked (hidden while blinded), the defence and strength
filters, Compare's undefended-vs-defended view, ranking by any metric of scores.csv, and
reader studies mixing defended and undefended cases.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_study_defences.py -q``.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import runner_study_config, write_blob_cohort
from inversion_audit.gui._ranking import rank_candidates
from inversion_audit.gui.review_panel import open_tab
from inversion_audit.study.index import CandidateScore, StudyIndex, entry_defence

pytest.importorskip("pytestqt")

PLUGIN = "napari-inversion-audit"
BASE = "unet_skull-stripped_bottleneck"
STRENGTHS = (0.5, 2.0)


@pytest.fixture(scope="module")
def defended_study(tmp_path_factory):
    """4 protocol subjects + 1 holdout, fold 0 of 2, U-Net, latent noise at two strengths."""
    from inversion_audit.study.config import study_config_from_dict
    from inversion_audit.study.runner import run_study

    root = tmp_path_factory.mktemp("defended_gui")
    cohort = write_blob_cohort(root / "cohort", {f"sub-{k:03d}": k for k in range(5)})
    config = runner_study_config(cohort)  # the session study's tiny settings, then:
    config["study"]["name"] = "gui-defended"
    config["cohort"].update(n_subjects=4, holdout_n=1)
    config["folds"]["run_folds"] = [0]
    config["archs"] = ["unet"]
    config["matching"] = {"metrics": ["ssim", "psnr"], "top_k": 1}
    config["defences"] = [{"kind": "latent-noise", "strengths": list(STRENGTHS)}]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INVERSION_AUDIT_CACHE", str(root / "cache"))
        run_study(study_config_from_dict(config), root / "study")
    return root / "study"


def _holdout(study) -> set[str]:
    return set(json.loads((study / "holdout.json").read_text())["holdout"])


def _visible_items(widget) -> list[str]:
    items = [widget.entry_list.item(r) for r in range(widget.entry_list.count())]
    return [i.text() for i in items if not i.isHidden()]


def _open(viewer, study):
    opener = open_tab(viewer, "Open study")
    assert opener.open_study(study) is not None
    return opener


def test_index_reads_holdout_defences_and_every_metric(defended_study):
    index = StudyIndex.open(defended_study)
    holdout = _holdout(defended_study)
    assert len(holdout) == 1 and index.holdout_ids == holdout
    assert {e.reconstruction_id for e in index.entries if not index.is_member(e)} == holdout
    runs = {p.name for p in (defended_study / "reconstructions").iterdir()}
    assert runs == {BASE, *(f"{BASE}_latent-noise-{s:g}" for s in STRENGTHS)}
    assert {entry_defence(e) for e in index.entries} == {
        None,
        *(("latent-noise", s) for s in STRENGTHS),
    }
    with open(defended_study / "scores" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert index.metrics() == sorted({r["metric"] for r in rows}) == ["psnr", "ssim"]
    r = rows[0]
    run = f"{BASE}_{r['defence']}" if r["defence"] else BASE
    (c,) = [
        c
        for c in index.candidates(run, r["reconstruction_id"])
        if c.candidate_id == r["candidate_id"]
    ]
    assert c.value(r["metric"]) == pytest.approx(float(r["value"]))


def test_rank_by_any_metric_in_its_direction():
    """reid (higher is better) and deformation (lower is better), against numpy's sort."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=6)
    cands = [
        CandidateScore(f"s{k}", metrics={"reid": float(v), "deformation": float(-v)})
        for k, v in enumerate(values)
    ]
    by_reid = [r.candidate.candidate_id for r in rank_candidates(cands, "reid")]
    assert by_reid == [f"s{k}" for k in np.argsort(-values)]
    by_def = [r.candidate.candidate_id for r in rank_candidates(cands, "deformation")]
    assert by_def == by_reid  # deformation = -reid: the smallest displacement first
    with pytest.raises(ValueError, match="cannot rank by 'nope'"):
        rank_candidates(cands, "nope")


@pytest.mark.slow
def test_open_study_marks_members_filters_defences_and_hides_while_blinded(
    make_napari_viewer, qtbot, defended_study
):
    viewer = make_napari_viewer()
    opener = _open(viewer, defended_study)
    holdout = _holdout(defended_study)
    index = opener.state.study
    texts = _visible_items(opener)
    assert len(texts) == len(index.entries) == 9
    for text in texts:
        sid = text.split(" · ")[0]
        assert text.endswith(" · non-member" if sid in holdout else " · member"), text

    # defence and strength filters, checked against the run folders' names
    assert [opener.defence_combo.itemText(i) for i in range(opener.defence_combo.count())] == [
        "all",
        "undefended",
        "latent-noise",
    ]
    opener.set_defence_filter("latent-noise", 0.5)
    shown = _visible_items(opener)
    assert len(shown) == 3 and all("bottleneck_latent-noise-0.5 · " in t for t in shown)
    opener.set_defence_filter("latent-noise")
    assert len(_visible_items(opener)) == 6
    opener.set_defence_filter("undefended")
    shown = _visible_items(opener)
    assert len(shown) == 3 and all(" · bottleneck · " in t for t in shown)
    opener.set_defence_filter("all")

    # Candidate matches: any metric of scores.csv ranks, here PSNR (higher is better)
    entry = index.entry(BASE, "sub-000")
    opener.select(entry)
    qtbot.waitUntil(lambda: opener.state.entry == entry, timeout=15000)
    table = open_tab(viewer, "Candidate matches")
    keys = [table.sort_combo.itemText(i) for i in range(table.sort_combo.count())]
    assert "psnr" in keys and "fused" in keys
    table.sort_combo.setCurrentText("psnr")
    with open(defended_study / "scores" / "scores.csv", newline="") as fh:
        psnr = {
            r["candidate_id"]: float(r["value"])
            for r in csv.DictReader(fh)
            if r["metric"] == "psnr"
            and r["reconstruction_id"] == "sub-000"
            and r["threat_model"] == "bottleneck"
        }
    assert [r.candidate.candidate_id for r in table.rows] == sorted(psnr, key=lambda c: -psnr[c])

    # blinded: the Open study list (subject ids, membership) is hidden and empty
    table.blinded_check.setChecked(True)
    assert opener.entry_list.count() == 0 and not opener.entry_list.isVisible()
    assert opener.blinded_note.isVisibleTo(opener)
    from qtpy.QtWidgets import QWidget

    strings = []
    for w in [opener, *opener.findChildren(QWidget)]:
        if w.isVisibleTo(opener):
            for attr in ("text", "currentText", "toolTip"):
                f = getattr(w, attr, None)
                if callable(f):
                    strings.append(str(f()))
    assert not [s for s in strings if "sub-" in s or "member" in s], strings
    table.blinded_check.setChecked(False)
    assert opener.entry_list.count() == 9 and opener.entry_list.isVisibleTo(opener)


@pytest.mark.slow
def test_compare_shows_undefended_beside_defended(make_napari_viewer, qtbot, defended_study):
    viewer = make_napari_viewer()
    opener = _open(viewer, defended_study)
    index = opener.state.study
    entry = index.entry(f"{BASE}_latent-noise-2", "sub-000")
    opener.all_runs.setChecked(True)
    opener.select(entry)
    qtbot.waitUntil(lambda: opener.state.entry == entry, timeout=15000)
    compare = open_tab(viewer, "Compare")
    assert compare.compare_defence()
    left, right = compare.original_combo.layer(), compare.reconstruction_combo.layer()
    assert left.metadata["inversion_audit"]["run"] == BASE
    assert right.metadata["inversion_audit"]["run"] == f"{BASE}_latent-noise-2"
    assert compare.mode_combo.currentText() == "side by side" and viewer.canvas.grid.enabled
    assert left.visible and right.visible and left.opacity == right.opacity == 1.0
    # the layers hold the study's files
    from inversion_audit.io import read_volume

    for layer, run in ((left, BASE), (right, f"{BASE}_latent-noise-2")):
        truth = read_volume(index.reconstruction_file(index.entry(run, "sub-000"))).array
        np.testing.assert_array_equal(layer.data, truth)
    assert compare.compare_defence(f"{BASE}_latent-noise-0.5")
    assert compare.reconstruction_combo.layer().metadata["inversion_audit"]["run"].endswith("0.5")


def test_reader_study_mixes_defended_cases_and_keeps_the_run_in_the_key(defended_study, tmp_path):
    from inversion_audit.reader_study.design import create_design
    from inversion_audit.reader_study.package import write_package
    from inversion_audit.reader_study.session import BlindedStudy

    plain = create_design(defended_study, ["ann"], n_candidates=2, seed=0)
    assert {c.run for c in plain.cases} == {BASE}
    mixed = create_design(defended_study, ["ann"], n_candidates=2, seed=0, include_defended=True)
    runs = {p.name for p in (defended_study / "reconstructions").iterdir()}
    assert {c.run for c in mixed.cases} == runs and len(mixed.cases) == 3 * len(plain.cases)
    # the undefended cases are the same as without the option
    assert [c for c in mixed.cases if c.run == BASE][0].candidates == plain.cases[0].candidates
    for case in mixed.cases:  # each case's file is its own run's reconstruction
        assert (
            case.reconstruction_path
            == f"reconstructions/{case.run}/{case.reconstruction_id}_recon_pre.nii.gz"
        )
    package = write_package(tmp_path / "package", tmp_path / "key.sqlite", mixed)
    study = BlindedStudy(package)
    session = study.log_in("ann")
    session.open_case()
    seen = 0
    while not session.done:
        shown = repr(session.case) + " ".join(im.name for im in session.images())
        assert not any(w in shown.lower() for w in ("noise", "latent", "defen", "unet", "sub-"))
        session.submit(match="A", confidence=3, anatomy=3)
        seen += 1
    assert seen == len(mixed.cases)
    study.close()


def test_reader_study_cli_include_defended(defended_study, tmp_path):
    from inversion_audit.cli.main import main
    from inversion_audit.reader_study.key import read_key

    out, key = tmp_path / "package", tmp_path / "key.sqlite"
    rc = main(
        ["reader-study", "create", "--study", str(defended_study), "--readers", "ann"]
        + ["--candidates", "2", "--include-defended", "--out", str(out), "--key", str(key)]
    )
    assert rc == 0
    runs = {c.run for c in read_key(key)[0].cases}
    assert runs == {p.name for p in (defended_study / "reconstructions").iterdir()}
