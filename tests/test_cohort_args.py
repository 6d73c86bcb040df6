"""Every command's cohort argument is resolved one way: ``sample:N`` works in each of them."""

from __future__ import annotations

import csv

import pytest

from inversion_audit.cli.main import main
from inversion_audit.study.layout import StudyPaths

COMMON = ["--device", "cpu", "--threads", "1", "--quiet"]


@pytest.mark.slow
def test_sample_cohort_in_train_target_inversion_reconstruct_and_match(tmp_path, capsys):
    out, recon, match = tmp_path / "run", tmp_path / "recon", tmp_path / "match"
    pre = ["--spacing", "8", "--shape", "16", "16", "16", "--no-bias-correction"]
    small = ["--epochs", "1", "--batch-size", "2"]
    code = main(
        ["train-target", "--arch", "unet", "--cohort", "sample:2", "--out", str(out),
         "--depth", "2", "--filters", "4", *small, *pre, *COMMON]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    code = main(
        ["train-inversion", "--target", str(out / "target.safetensors"), "--cohort", "sample:2",
         "--out", str(out), *small, *COMMON]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    code = main(
        ["reconstruct", "--target", str(out / "target.safetensors"), "--inversion",
         str(out / "inversion"), "--cohort", "sample:2", "--subjects", "sub-001", "--out", str(recon),
         *COMMON]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in recon.glob("*.nii.gz")) == [
        "sub-001_recon.nii.gz",
        "sub-001_recon_pre.nii.gz",
    ]
    code = main(
        ["match", "--reconstructions", str(recon), "--candidates", "sample:2", "--out", str(match),
         "--spacing", "8", "--no-bias-correction", "--metrics", "ssim", *COMMON]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with open(StudyPaths(match).scores, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["reconstruction_id"], r["candidate_id"]) for r in rows} == {
        ("sub-001", "sub-000"),
        ("sub-001", "sub-001"),
    }


def test_cohort_argument_errors_name_it(tmp_path):
    from inversion_audit.cli.common import load_cohort_arg
    from inversion_audit.errors import CohortError

    with pytest.raises(CohortError, match="sample:x"):
        load_cohort_arg("sample:x", "{id}_T1.nii.gz", "{id}_seg.nii.gz")
    with pytest.raises(CohortError, match="nowhere"):
        load_cohort_arg(str(tmp_path / "nowhere"), "{id}_T1.nii.gz", "{id}_seg.nii.gz")
    assert main(["train-target", "--cohort", "sample:x", "--out", str(tmp_path / "o"), *COMMON])
