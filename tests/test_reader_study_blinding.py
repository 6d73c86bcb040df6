"""Reader-study blinding on the bundled demo study (a real study-runner output).

Every image of a case shares one grid and one window; nothing a reader can reach names a
subject, a file or a score; the answer's position on screen is uniform over cases and readers.
Readers open the reader package; the key (subjects, files) is read here only to check it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.stats import chisquare

from inversion_audit.gui.demo_study import demo_study_dir
from inversion_audit.reader_study import (
    LABELS,
    PackageStore,
    ReaderSession,
    ReaderStudyStore,
    create_design,
    read_key,
    write_package,
)

DEMO = demo_study_dir()
K = 5


def demo_subjects() -> list[str]:
    return sorted(p.name.split(".")[0] for p in (DEMO / "preprocessed").glob("*/*.nii.gz"))


def demo_reconstructions(run: str) -> set[str]:
    """The reconstructions of ``run`` in ``scores.csv``: members and non-members alike."""
    with open(DEMO / "scores" / "scores.csv", newline="") as fh:
        return {
            row["reconstruction_id"]
            for row in csv.DictReader(fh)
            if f"{row['arch']}_{row['variant']}_{row['threat_model']}" == run
        }


def demo_holdout() -> set[str]:
    """The demo's non-members (``holdout.json``), read with the json module."""
    return set(json.loads((DEMO / "holdout.json").read_text())["holdout"])


def demo_scores(run: str) -> list[str]:
    """Every score of ``run`` in the forms a widget could print it (3 and 4 decimals)."""
    out = []
    with open(DEMO / "scores" / "scores.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if f"{row['arch']}_{row['variant']}_{row['threat_model']}" == run:
                v = float(row["value"])
                out += [f"{v:.3f}", f"{v:.4f}"]
    return out


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    """The demo study's reader package (its key is ``key.sqlite`` beside it)."""
    design = create_design(DEMO, ["alice", "bob"], n_candidates=K, seed=0, quality_only_cases=1)
    root = tmp_path_factory.mktemp("rs")
    return write_package(root / "pkg", root / "key.sqlite", design)


def demo_key(demo_db: Path):
    return read_key(demo_db.parent / "key.sqlite")[0]


def test_every_case_on_one_centred_grid_and_window(demo_db):
    design = demo_key(demo_db)
    with PackageStore(demo_db) as store:
        for reader in design.readers:
            s = ReaderSession(store, reader)
            while not s.done:
                images = s.images()
                case = design.case(store.case_order(reader)[s.position])
                # the files themselves sit at different subjects' origins: the leak fixed here
                headers = [nib.load(DEMO / case.reconstruction_path)] + [
                    nib.load(DEMO / c.path) for c in case.candidates
                ]
                if case.kind == "match":
                    assert len({tuple(h.affine[:3, 3]) for h in headers}) > 1
                shape = headers[0].shape
                zooms = tuple(float(z) for z in headers[0].header.get_zooms()[:3])
                centred = tuple(-(n - 1) / 2 * z for n, z in zip(shape, zooms, strict=True))
                for im in images:
                    assert im.data.shape == shape and im.data.dtype == np.float32
                    assert im.scale == pytest.approx(zooms)
                    assert im.translate == pytest.approx(centred)
                    # one window for the case, from its own images
                    assert im.contrast_limits == images[0].contrast_limits
                    assert im.contrast_limits[0] < im.contrast_limits[1]
                s.go_to(s.position + 1)


def test_images_are_the_files_voxel_for_voxel_in_the_shown_order(demo_db):
    design = demo_key(demo_db)
    with PackageStore(demo_db) as store:
        s = ReaderSession(store, "bob")
        s.open_case()
        while s.case.kind != "match":
            s.go_to(s.position + 1)
        cid = store.case_order("bob")[s.position]
        case = design.case(cid)
        paths = {c.label: c.path for c in case.candidates}
        shown = design.shown_labels("bob", cid)
        images = s.images()
        expected = [case.reconstruction_path] + [paths[label] for label in shown]
        for im, rel in zip(images, expected, strict=True):
            ras = nib.as_closest_canonical(nib.load(DEMO / rel)).get_fdata()
            np.testing.assert_allclose(im.data, np.nan_to_num(ras), atol=1e-6)
        # the letter a reader picks is stored as the case's own label
        a = s.submit(match="C", confidence=2, anatomy=3)
        assert a.match == "C"
        stored = store.history("bob", cid)[-1]
        assert stored.match == shown[2]


def test_reader_case_holds_nothing_but_what_a_reader_sees(demo_db):
    subjects = demo_subjects()
    with PackageStore(demo_db) as store:
        s = ReaderSession(store, "alice")
        while not s.done:
            case = s.case
            fields = dataclasses.asdict(case)
            assert set(fields) == {"number", "kind", "labels", "questions"}
            assert case.number == s.position + 1
            assert case.labels == (tuple(LABELS[:K]) if case.kind == "match" else ())
            text = repr(case) + repr(s.current_answer())
            assert not any(sid in text for sid in subjects) and ".nii" not in text
            assert not hasattr(s, "store") and not hasattr(s, "order")
            s.go_to(s.position + 1)


def test_non_members_are_cases_that_look_like_any_other(demo_db):
    """A reader study includes the holdout's reconstructions (identifying a non-member is a
    legitimate case, and lets readers' identification of members and non-members be compared
    from the key); what a reader sees of a case carries no membership."""
    holdout = demo_holdout()
    design = demo_key(demo_db)
    with PackageStore(demo_db) as store:
        match = {c.reconstruction_id: c for c in design.cases if c.kind == "match"}
        assert set(match) == demo_reconstructions(design.run) and holdout < set(match)
        for rid in holdout:  # the true original is among the candidates, as for members
            assert rid in {c.candidate_id for c in match[rid].candidates}
        s = ReaderSession(store, "alice")
        while not s.done:
            text = (repr(s.case) + repr(s.current_answer())).lower()
            assert "member" not in text and "holdout" not in text
            s.go_to(s.position + 1)


def test_answer_position_is_uniform_over_cases_and_readers():
    readers = [f"reader{i:03d}" for i in range(150)]
    positions: Counter[int] = Counter()
    n_cases = 0
    for seed in range(3):
        design = create_design(DEMO, readers, n_candidates=K, seed=seed, strategy="hardest")
        n_cases += len(demo_reconstructions(design.run))
        for r in readers:
            for case in design.cases:
                shown = design.shown_labels(r, case.case_id)
                positions[shown.index(case.true_label)] += 1
    counts = [positions[i] for i in range(K)]
    assert sum(counts) == n_cases * len(readers)
    assert chisquare(counts).pvalue > 0.01, counts
    # and each reader's order of a case differs from the design's label order somewhere
    d = create_design(DEMO, readers[:2], n_candidates=K, seed=0)
    c0 = d.cases[0].case_id
    assert d.shown_labels(readers[0], c0) != d.shown_labels(readers[1], c0) or any(
        d.shown_labels(readers[0], c.case_id) != d.shown_labels(readers[1], c.case_id)
        for c in d.cases
    )


def test_candidate_orders_survive_the_package_and_key(demo_db):
    design = create_design(DEMO, ["alice", "bob"], n_candidates=K, seed=0, quality_only_cases=1)
    with PackageStore(demo_db) as store:
        assert store.blind.candidate_orders == design.candidate_orders
        assert store.blind == design.blind()
    assert demo_key(demo_db).to_dict() == design.to_dict()


# -- the widget ------------------------------------------------------------------------------
pytest.importorskip("pytestqt")


@pytest.mark.slow
def test_widget_layers_share_grid_and_window_and_name_nothing(make_napari_viewer, qtbot, demo_db):
    from test_reader_study_widget import answer_case, open_widget, visible_strings

    viewer, dock, widget = open_widget(make_napari_viewer, qtbot)
    assert widget.open_database(str(demo_db))
    assert widget.log_in("alice")
    # the widget holds the reader's view of the database, never the store or its design
    from inversion_audit.reader_study.design import Design
    from test_reader_study_package import reachable

    objects, _ = reachable([widget.study, widget.session])
    assert not [o for o in objects if isinstance(o, ReaderStudyStore | Design)]
    assert not hasattr(widget, "store") and not hasattr(widget.study, "design")
    run = demo_key(demo_db).run  # the coordinator's view
    n_cases = len(demo_reconstructions(run)) + 1  # a match case each, one quality-only case
    assert widget.study.readers == ("alice", "bob") and widget.study.n_cases == n_cases
    forbidden = [s.lower() for s in demo_subjects()] + [".nii", "ssim", "fold", "sub-"]
    forbidden += ["member", "holdout"]  # non-members are cases too, never marked as such
    scores = demo_scores(run)
    seen = 0
    while not widget.session.done:
        layers = list(viewer.layers)
        assert [la.name for la in layers] == ["Reconstruction", *widget.session.case.labels]
        for la in layers:
            assert la.data.shape == layers[0].data.shape
            assert tuple(la.scale) == tuple(layers[0].scale)
            assert tuple(la.translate) == tuple(layers[0].translate)
            window = tuple(layers[0].contrast_limits)  # the case's one window
            assert tuple(la.contrast_limits) == window
            assert tuple(la.contrast_limits_range) == window
            assert la.metadata == {} and la.source.path is None
        strings = [s.lower() for s in visible_strings(widget, dock, viewer)]
        assert not [s for s in strings if any(f in s for f in forbidden)]
        assert not [s for s in strings if any(v in s for v in scores)]
        answer_case(qtbot, widget, "A")
        seen += 1
    assert seen == n_cases
