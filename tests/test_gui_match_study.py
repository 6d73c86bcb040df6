"""An ``inversion-audit match`` output folder opens in the Open study widget like a study.

Run under Xvfb: ``xvfb-run -a .venv/bin/pytest tests/test_gui_match_study.py -q``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from inversion_audit.cli.main import main
from inversion_audit.data import PreprocessConfig, load_cohort, preprocess_subject
from inversion_audit.gui.review_panel import open_tab
from inversion_audit.io import read_volume, write_volume

PLUGIN = "napari-inversion-audit"


def test_open_study_opens_a_match_folder(make_napari_viewer, qtbot, tiny_cohort, tmp_path):
    config = PreprocessConfig(shape=(32, 32, 32), skull_strip="labels", bias_correction=False)
    cohort = load_cohort(tiny_cohort)
    recon_dir = tmp_path / "reconstructions" / "unet_skull-stripped_bottleneck"
    for sid in ("sub01", "sub02"):
        pre = preprocess_subject(cohort[sid], config)
        write_volume(
            recon_dir / f"{sid}_recon_pre.nii.gz", gaussian_filter(pre.image, 1.0), pre.affine
        )
    out = tmp_path / "M"
    code = main(
        [
            "match", "--reconstructions", str(recon_dir), "--candidates", str(tiny_cohort),
            "--out", str(out), "--skull-strip", "labels", "--no-bias-correction",
            "--metrics", "ssim,correlation", "--quiet", "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    viewer = make_napari_viewer()
    widget = open_tab(viewer, "Open study")
    index = widget.open_study(out)
    assert index is not None and widget.entry_list.count() == 2
    entry = index.search("sub02")[0]
    assert (entry.arch, entry.variant, entry.threat_model) == (
        "unet",
        "skull-stripped",
        "bottleneck",
    )
    assert widget.select(entry) is not None
    qtbot.waitUntil(lambda: widget.state.entry == entry, timeout=30000)
    original = viewer.layers[widget.state.original_layer]
    recon = viewer.layers[widget.state.reconstruction_layer]
    np.testing.assert_array_equal(original.data, preprocess_subject(cohort["sub02"], config).image)
    np.testing.assert_array_equal(
        recon.data, read_volume(recon_dir / "sub02_recon_pre.nii.gz").array
    )
    labels = viewer.layers["labels"]
    assert labels.metadata["inversion_audit"]["subject"] == "sub02"
