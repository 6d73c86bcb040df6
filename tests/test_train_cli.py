"""``train-target``, ``train-inversion`` and ``reconstruct`` on the tiny cohort."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from inversion_audit.cli.main import main
from inversion_audit.io import ids_hash

COMMON = "--device cpu --threads 1 --quiet"


def run(command: str) -> int:
    """Run the CLI on a command line (test paths hold no spaces)."""
    return main(f"{command} {COMMON}".split())


@pytest.mark.slow
def test_train_target_inversion_and_reconstruct(tiny_cohort, tmp_path, capsys):
    out = tmp_path / "run"
    config = tmp_path / "fold.toml"
    config.write_text(
        '[target]\ndepth = 2\nbase_filters = 4\nepochs = 1\nbatch_size = 2\nlabel_map = [["1"], ["2-4"]]\n'
        "[inversion]\nepochs = 1\nbatch_size = 2\n"
        "[preprocess]\nshape = [32, 32, 32]\n"
    )
    code = run(
        f"train-target --arch segnet --cohort {tiny_cohort} --subjects sub00,sub01 --out {out} "
        f"--config {config} --seed 5 --skull-strip labels"
    )
    assert code == 0
    record = json.loads((out / "target.json").read_text())
    assert record["architecture"] == "segnet" and record["seed"] == 5
    assert record["arch_args"]["n_classes"] == 3
    assert record["label_map"] == {"1": 1, "2": 2, "3": 2, "4": 2}
    assert record["preprocess"]["skull_strip"] == "labels"
    assert record["preprocess"]["shape"] == [32, 32, 32]
    assert record["preprocess"]["bias_correction"] is True  # N4 is on unless turned off
    # the sidecar: epochs and final losses of this run, a hash of the private ids, never the ids
    assert record["epochs"] == 1 and record["epochs_run"] == 1
    assert np.isfinite(record["final_losses"]["train"])
    assert record["train_ids_hash"] == ids_hash(["sub00", "sub01"])
    assert "sub00" not in (out / "target.json").read_text()

    code = run(
        f"train-inversion --target {out / 'target.safetensors'} --cohort {tiny_cohort} "
        f"--subjects sub02 sub03 --out {out} --config {config} --threat-model bottleneck+skips"
    )
    assert code == 0
    inv = json.loads((out / "inversion.json").read_text())
    assert inv["kind"] == "inversion" and inv["threat_model"] == "bottleneck+skips"
    assert inv["preprocess"] == record["preprocess"] and inv["n_train"] == 2
    assert inv["train_ids_hash"] == ids_hash(["sub02", "sub03"])
    assert "sub02" not in (out / "inversion.json").read_text()

    recon = tmp_path / "recon"
    code = run(
        f"reconstruct --target {out / 'target.safetensors'} --inversion {out / 'inversion'} "
        f"--cohort {tiny_cohort} --subjects sub00 --out {recon}"
    )
    assert code == 0
    source = nib.load(tiny_cohort / "sub00_T1.nii.gz")
    written = nib.load(recon / "sub00_recon.nii.gz")
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    assert nib.load(recon / "sub00_recon_pre.nii.gz").shape == (32, 32, 32)
    assert "wrote 2 reconstructions" in capsys.readouterr().out


def test_bad_inputs_fail_with_messages_naming_them(tiny_cohort, tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    code = run(f"train-inversion --target {missing} --cohort {tiny_cohort} --out {tmp_path}")
    assert code == 1
    assert "nope.json is missing" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[target]\nfilterz = 8\n")
    code = run(f"train-target --cohort {tiny_cohort} --out {tmp_path} --config {bad}")
    assert code == 1
    assert "filterz" in capsys.readouterr().err
