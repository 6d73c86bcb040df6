"""A reader case's one window (issue 30): computed from the case's own images, the same for
every image, clipping at most 1% of any image's brain voxels; the package keeps the values
unclipped, and the widget shows the layers in that window under orientation letters."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.reader_study import PackageStore, ReaderSession, create_design, write_package
from test_reader_study_design import build_reader_source_study, subject_ids

#: a candidate brightened beyond the preprocessed 0-1 range, and by how much
BRIGHT, GAIN = subject_ids()[0], 1.6


@pytest.fixture(scope="session")
def reader_source_study(tmp_path_factory) -> Path:
    return build_reader_source_study(tmp_path_factory)


@pytest.fixture(scope="module")
def bright_package(reader_source_study, tmp_path_factory) -> tuple[Path, str, Path]:
    """(package, id of a match case showing the bright candidate, that candidate's source)
    of a copy of the runner's study whose candidate ``BRIGHT`` reaches 1.6."""
    root = tmp_path_factory.mktemp("window")
    study = Path(shutil.copytree(reader_source_study, root / "study"))
    [source] = study.glob(f"preprocessed/*/{BRIGHT}.nii.gz")
    img = nib.load(source)
    bright = (np.asarray(img.dataobj, np.float32) * GAIN).astype(np.float32)
    nib.save(nib.Nifti1Image(bright, img.affine, img.header), source)
    design = create_design(study, ["alice"], n_candidates=4, seed=2)
    pkg = write_package(root / "pkg", root / "key.sqlite", design)
    case = next(c for c in design.cases if any(BRIGHT in x.path for x in c.candidates))
    return pkg, case.case_id, source


def case_images(pkg: Path, case_id: str):
    """The session's images of case ``case_id`` as alice sees them."""
    with PackageStore(pkg) as store:
        s = ReaderSession(store, "alice")
        s.go_to(store.case_order("alice").index(case_id))
        return s.images()


def test_package_keeps_values_above_one(bright_package):
    pkg, case_id, source = bright_package
    label = next(
        p.name.removesuffix(".nii.gz")
        for p in (pkg / case_id).glob("*.nii.gz")
        if np.asarray(nib.load(p).dataobj).max() > 1.0
    )
    data = np.asarray(nib.load(pkg / case_id / f"{label}.nii.gz").dataobj)
    expected = nib.as_closest_canonical(nib.load(source)).get_fdata()
    assert data.dtype == np.float32 and data.max() == pytest.approx(GAIN * 1.0, rel=1e-3)
    np.testing.assert_allclose(data, expected, atol=1e-6)


def test_case_images_share_one_window_clipping_at_most_one_percent(bright_package):
    pkg, case_id, _ = bright_package
    images = case_images(pkg, case_id)
    assert len(images) == 5 and len({im.contrast_limits for im in images}) == 1
    lo, hi = images[0].contrast_limits
    lows, highs = [], []
    for im in images:
        brain = im.data[im.data != 0]  # skull-stripped: the brain is the non-zero voxels
        assert 0 < brain.size < 0.99 * im.data.size
        outside = np.count_nonzero((brain < lo) | (brain > hi))
        assert outside <= 0.01 * brain.size
        # numpy's own percentiles lie inside the window
        ref_lo, ref_hi = np.percentile(brain, [0.5, 99.5])
        assert lo <= ref_lo and ref_hi <= hi
        lows.append(np.percentile(brain, 0.5, method="lower"))
        highs.append(np.percentile(brain, 99.5, method="higher"))
    # the window spans the lowest to the highest robust range, no wider
    assert (lo, hi) == pytest.approx((min(lows), max(highs)))
    assert hi > 1.0  # the bright candidate is not saturated at 1


@pytest.mark.slow
def test_widget_layers_show_the_case_window_with_orientation_letters(
    make_napari_viewer, qtbot, bright_package
):
    from inversion_audit.gui._orientation import OVERLAY_KEYS
    from test_reader_study_widget import open_widget

    pkg, case_id, _ = bright_package
    viewer, _, widget = open_widget(make_napari_viewer, qtbot)
    assert widget.open_database(str(pkg)) and widget.log_in("alice")
    for case in [None, case_id]:  # the first case shown, then the bright one (layers reused)
        if case is not None:
            with PackageStore(pkg) as store:
                widget.session.go_to(store.case_order("alice").index(case))
            widget._show_case()
        window = widget.session.images()[0].contrast_limits
        layers = list(viewer.layers)
        assert [la.name for la in layers] == ["Reconstruction", "A", "B", "C", "D"][: len(layers)]
        for la in layers:
            assert tuple(la.contrast_limits) == pytest.approx(window)
            assert tuple(la.contrast_limits_range) == pytest.approx(window)
    assert window[1] > 1.0
    overlays = viewer.canvas.overlays
    letters = {
        overlays[OVERLAY_KEYS[e]].text for e in ("left", "right") if OVERLAY_KEYS[e] in overlays
    }
    assert letters == {"R", "L"}
